"""The fake vector env of tests/fakes.py meets the env contract (agents/envs/base.py), and
``agents.loop.evaluate`` counts whole games on it exactly."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fakes import CORRIDOR_CAP, FakeEnvs, make_fake_envs

from agents.envs.base import EnvSpec, VectorEnv, game_info
from agents.loop import evaluate
from dreamer import ActOutput, EnvConfig

LEFT, STAY, RIGHT = 0, 1, 2  # the corridor's actions
START, GOAL = 0, 3  # its states: S . . G


def state_of(frames) -> np.ndarray:
    assert frames.dtype == np.float32 and np.all(frames.sum(-1) == 1.0)  # one-hot
    return np.argmax(frames, -1)


def test_spec_and_contract():
    envs = FakeEnvs(3)
    assert isinstance(envs, VectorEnv) and envs.functional is None
    assert envs.spec == EnvSpec(num_actions=3, frame_shape=(4,), frame_dtype=np.float32)
    assert envs.spec.observation_shape == (4,) and envs.num_envs == 3
    frames = envs.reset(seed=5)
    assert frames.shape == (3, 4)
    np.testing.assert_array_equal(state_of(frames), [START] * 3)
    np.testing.assert_array_equal(envs.observation(), frames)
    with pytest.raises(ValueError, match=r"expected 3 actions in \[0, 3\)"):
        envs.step(np.array([0, 1, 3]))
    with pytest.raises(ValueError, match="expected 3 actions"):
        envs.step(np.array([0, 1]))
    envs.close()
    assert envs.closed


def test_termination_truncation_and_same_step_autoreset():
    # env 0 walks right (goal after 3 steps, again after 6), env 1 stays (cut at the cap),
    # env 2 goes right once then left, bumping the wall (cut at the cap, no reward).
    envs = FakeEnvs(3)
    envs.reset()
    script = [[RIGHT, STAY, RIGHT], [RIGHT, STAY, LEFT], [RIGHT, STAY, LEFT], [RIGHT, STAY, LEFT],
              [RIGHT, STAY, LEFT], [RIGHT, STAY, LEFT], [RIGHT, STAY, LEFT]]
    log = []
    for actions in script:
        frames, reward, terminated, truncated, info = envs.step(np.array(actions))
        assert reward.dtype == np.float32 and terminated.dtype == bool and truncated.dtype == bool
        game_end, game_return = game_info(info)
        log.append((state_of(frames), reward, terminated, truncated, game_end, game_return))
    states, reward, terminated, truncated, game_end, game_return = (np.array(x) for x in zip(*log))
    assert CORRIDOR_CAP == 6
    np.testing.assert_array_equal(states[:, 0], [1, 2, START, 1, 2, START, 1])  # the goal frame is never seen
    np.testing.assert_array_equal(reward[:, 0], [0, 0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(terminated[:, 0], [0, 0, 1, 0, 0, 1, 0])
    np.testing.assert_array_equal(states[:, 1], [START] * 7)
    np.testing.assert_array_equal(truncated[:, 1], [0, 0, 0, 0, 0, 1, 0])
    np.testing.assert_array_equal(states[:, 2], [1, 0, 0, 0, 0, START, 0])
    np.testing.assert_array_equal(truncated[:, 2], [0, 0, 0, 0, 0, 1, 0])
    assert not truncated[:, 0].any() and not terminated[:, 1:].any() and not reward[:, 1:].any()
    # every episode is a whole game; its return is reported at its last step only
    np.testing.assert_array_equal(game_end, terminated | truncated)
    np.testing.assert_array_equal(game_return, np.where(game_end, reward == 1, 0.0))
    assert game_end.sum() == 4


def test_make_fake_envs_sizes_and_caps_by_mode():
    cfg = EnvConfig(num_envs=4, num_eval_envs=2, max_episode_steps=None, eval_max_episode_steps=9)
    train, evaluation = make_fake_envs(cfg, "train", 0), make_fake_envs(cfg, "eval", 1)
    assert (train.num_envs, train.max_episode_steps) == (4, CORRIDOR_CAP)
    assert (evaluation.num_envs, evaluation.max_episode_steps) == (2, 9)


def scripted_greedy(plan):
    """A greedy function for ``evaluate``: env ``i`` takes ``plan[i]`` at every step."""

    def greedy(params, rng, obs):
        n = obs.shape[0]
        action = jnp.asarray(plan[:n], jnp.int32)
        return ActOutput(action, jax.nn.one_hot(action, 3), jnp.zeros(n), jnp.zeros(n))

    return greedy


def test_evaluate_counts_whole_games_per_env_in_order():
    # env 0 reaches the goal every 3 steps (return 1), env 1 never does (return 0 every 6 steps):
    # evaluate takes the same number of games from each env, interleaved, however fast they end
    envs = FakeEnvs(2)
    result = evaluate(scripted_greedy([RIGHT, STAY]), None, envs, episodes=4, rng=jax.random.PRNGKey(0), seed=0)
    assert result.returns == [1.0, 0.0, 1.0, 0.0]
    # env 1's games end at the step cap (truncated), env 0's by reaching the goal
    assert result.capped == [False, True, False, True]
    # the histogram counts the actions of the games that count: env 0 played RIGHT 6 times,
    # env 1 STAY 12 times (two 6-step games), then the loop stopped
    assert result.action_counts.tolist() == [0, 12, 6]
    metrics = result.metrics()
    assert metrics["eval/capped_fraction"] == 0.5 and metrics["eval/action_1"] == pytest.approx(12 / 18)
    result = evaluate(scripted_greedy([RIGHT, STAY]), None, envs, episodes=3, rng=jax.random.PRNGKey(0), seed=0)
    assert result.returns == [1.0, 0.0, 1.0]
