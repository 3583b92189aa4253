"""MinAtar envs (agents/envs/minatar.py): ids, spec, host vs functional, autoreset."""

from __future__ import annotations

import importlib
import math
import sys

import numpy as np
import pytest

from agents.envs.base import EnvError, FunctionalEnv, VectorEnv
from agents.envs.minatar import (
    GAMES,
    MISSING_GYMNAX,
    MinAtarEnvs,
    MinAtarFunctional,
    game_name,
    is_minatar,
    minatar_spec,
)

# MinAtar's games as gymnax 1.0.1 builds them: (actions, observation channels).
EXPECTED = {
    "Asterix": (5, 4),
    "Breakout": (3, 4),
    "Freeway": (3, 7),
    "Seaquest": (6, 10),
    "SpaceInvaders": (4, 6),
}


def test_ids_and_games():
    assert GAMES == tuple(EXPECTED)
    assert is_minatar("MinAtar/Breakout") and is_minatar("minatar/breakout")
    assert is_minatar("MinAtar/Pong")  # routed here, rejected with the list below
    assert not is_minatar("ALE/Breakout-v5") and not is_minatar("CartPole-v1")
    assert not is_minatar(None)
    assert game_name("MinAtar/spaceinvaders") == "SpaceInvaders"
    assert game_name("MINATAR/Space_Invaders") == "SpaceInvaders"
    assert game_name("Seaquest") == "Seaquest"
    with pytest.raises(EnvError) as err:
        MinAtarEnvs("MinAtar/Pong", 2, seed=0)
    msg = str(err.value)
    assert "\n" not in msg and "'MinAtar/Pong'" in msg
    for g in GAMES:
        assert f"MinAtar/{g}" in msg


@pytest.mark.parametrize("missing", ["gymnax", "six"])
def test_missing_dependency_is_one_line_error(monkeypatch, missing):
    import agents.envs
    import agents.envs.minatar as original

    monkeypatch.setitem(sys.modules, missing, None)  # `import <missing>` raises ImportError
    monkeypatch.delitem(sys.modules, "agents.envs.minatar")
    monkeypatch.setattr(agents.envs, "minatar", original)  # restored after the reimport
    module = importlib.import_module("agents.envs.minatar")  # importable without gymnax
    assert module.is_minatar("MinAtar/Breakout")
    for build in (lambda: module.MinAtarEnvs("MinAtar/Breakout", 2, seed=0),
                  lambda: module.minatar_spec("MinAtar/Breakout")):
        with pytest.raises(EnvError) as err:
            build()
        assert str(err.value) == MISSING_GYMNAX == 'MinAtar envs need gymnax: pip install -e ".[minatar]"'


def test_bad_arguments():
    with pytest.raises(EnvError, match="mode"):
        MinAtarEnvs("MinAtar/Breakout", 2, seed=0, mode="test")
    with pytest.raises(EnvError, match="num_envs"):
        MinAtarEnvs("MinAtar/Breakout", 0, seed=0)
    with pytest.raises(EnvError, match="max_episode_steps"):
        MinAtarEnvs("MinAtar/Breakout", 2, seed=0, max_episode_steps=0)


def _random_rollout(fenv: MinAtarFunctional, key, steps: int):
    """Random actions through the functional env under one jit; also returns, per step,
    gymnax's own float observation of the new state (to check the bool frames are lossless)."""
    import jax

    n = fenv.num_envs

    @jax.jit
    def run(key):
        key, sub = jax.random.split(key)
        state, frames0 = fenv.init(sub)

        def body(carry, k):
            state = carry
            k_act, k_step, k_obs = jax.random.split(k, 3)
            actions = jax.random.randint(k_act, (n,), 0, fenv.spec.num_actions)
            state, out = fenv.step(k_step, state, actions)
            raw = jax.vmap(fenv.env.observe, in_axes=(0, 0, None, None))(
                jax.random.split(k_obs, n), state.game.env_state, None, fenv.params)
            return state, (out, raw)

        _, (outs, raw) = jax.lax.scan(body, state, jax.random.split(key, steps))
        return frames0, outs, raw

    return jax.device_get(run(key))


@pytest.mark.parametrize("game", GAMES)
def test_spec_frames_and_random_policy(game):
    import jax

    actions, channels = EXPECTED[game]
    # Freeway's episodes last 2,500 steps; cap them here so that some end in the rollout.
    cap = 200 if game == "Freeway" else None
    fenv = MinAtarFunctional(f"MinAtar/{game}", 16, max_episode_steps=cap)
    spec = fenv.spec
    assert spec == minatar_spec(f"MinAtar/{game}")
    assert spec.num_actions == actions
    assert spec.frame_shape == (10, 10, channels) == spec.observation_shape
    assert spec.frame_stack == 1 and np.dtype(spec.frame_dtype) == np.bool_
    assert isinstance(fenv, FunctionalEnv)

    steps = 400
    frames0, outs, raw = _random_rollout(fenv, jax.random.PRNGKey(0), steps)
    assert frames0.shape == (16, 10, 10, channels) and frames0.dtype == np.bool_
    assert outs.frame.shape == (steps, 16, 10, 10, channels) and outs.frame.dtype == np.bool_
    for name in ("reward", "game_return"):
        assert getattr(outs, name).shape == (steps, 16) and getattr(outs, name).dtype == np.float32
    for name in ("terminated", "truncated", "game_end"):
        assert getattr(outs, name).dtype == np.bool_
    # gymnax's observation is binary, so bool frames lose nothing.
    assert set(np.unique(raw).tolist()) <= {0.0, 1.0}
    np.testing.assert_array_equal(raw > 0.5, outs.frame)
    assert frames0.any() and outs.frame.any()
    if game == "Freeway":
        assert not outs.terminated.any()

    rewards = outs.reward
    assert np.isfinite(rewards).all() and (rewards >= 0).all()
    returns = outs.game_return[outs.game_end]
    assert returns.size > 0, "no game ended in the rollout"
    mean = float(returns.mean())
    assert math.isfinite(mean)
    print(f"{game}: random policy, {returns.size} games, mean return {mean:.2f}")


@pytest.mark.parametrize("game", ["Breakout", "Seaquest"])
def test_host_matches_functional(game):
    import jax

    n, steps, seed = 4, 120, 3
    env = MinAtarEnvs(f"MinAtar/{game}", n, seed=seed, max_episode_steps=40)
    assert isinstance(env, VectorEnv) and isinstance(env.functional, FunctionalEnv)
    fenv = env.functional
    assert fenv.num_envs == n and fenv.spec == env.spec
    rng = np.random.default_rng(0)
    actions = rng.integers(0, env.spec.num_actions, (steps, n))

    host_frames = [env.reset()]
    np.testing.assert_array_equal(env.observation(), host_frames[0])
    host = []
    for a in actions:
        frames, reward, term, trunc, info = env.step(a)
        host.append((frames, reward, term, trunc, info.game_end, info.game_return))
        np.testing.assert_array_equal(env.observation(), frames)

    # The functional env with the host's documented key schedule.
    step = jax.jit(fenv.step)
    key = jax.random.PRNGKey(seed)
    key, sub = jax.random.split(key)
    state, frames0 = fenv.init(sub)
    np.testing.assert_array_equal(np.asarray(frames0), host_frames[0])
    ended = 0
    for a, h in zip(actions, host):
        key, sub = jax.random.split(key)
        state, out = step(sub, state, a)
        np.testing.assert_array_equal(np.asarray(fenv.observation(state)), np.asarray(out.frame))
        for got, want in zip(jax.device_get(tuple(out)), h):
            np.testing.assert_array_equal(got, want)
        ended += int(h[4].sum())
    assert ended > 0  # the comparison covered autoresets


def _breakout_first_frame(frame: np.ndarray) -> bool:
    """Breakout's first frame: paddle at column 4, three full rows of bricks, ball on row 3."""
    bricks = np.zeros((10, 10), bool)
    bricks[1:4] = True
    paddle = np.zeros((10, 10), bool)
    paddle[9, 4] = True
    return (np.array_equal(frame[..., 3], bricks) and np.array_equal(frame[..., 0], paddle)
            and frame[..., 1].sum() == 1 and frame[3, :, 1].any())


def test_autoreset_terminated_truncated_and_game_return():
    n, cap, steps = 8, 25, 200
    env = MinAtarEnvs("MinAtar/Breakout", n, seed=7, max_episode_steps=cap)
    assert env.max_episode_steps == cap
    frames = env.reset()
    assert all(_breakout_first_frame(f) for f in frames)
    rng = np.random.default_rng(1)
    length = np.zeros(n, int)
    running = np.zeros(n, np.float64)
    n_term = n_trunc = 0
    for _ in range(steps):
        frames, reward, term, trunc, info = env.step(rng.integers(0, 3, n))
        length += 1
        running += reward
        assert not (term & trunc).any()
        np.testing.assert_array_equal(info.game_end, term | trunc)
        # A time limit is truncated, exactly at the cap, unless the game ended there.
        np.testing.assert_array_equal(trunc, (length == cap) & ~term)
        assert (length <= cap).all()
        np.testing.assert_array_equal(info.game_return, np.where(info.game_end, running, 0.0))
        time = np.asarray(env.state.game.env_state.time)
        for i in np.flatnonzero(info.game_end):
            assert _breakout_first_frame(frames[i]), "frame after an end is not a first frame"
            assert time[i] == 0
        np.testing.assert_array_equal(time[~info.game_end], length[~info.game_end])
        np.testing.assert_array_equal(np.asarray(env.state.game_return),
                                      np.where(info.game_end, 0.0, running).astype(np.float32))
        n_term += int(term.sum())
        n_trunc += int(trunc.sum())
        length[info.game_end] = 0
        running[info.game_end] = 0.0
    assert n_term > 0 and n_trunc > 0


def test_game_over_at_the_cap_is_terminated_only():
    # Find when env 0's first game ends by itself, then cap episodes at that very step.
    actions = np.zeros(2, int)  # no-op: the ball soon drops past the still paddle
    env = MinAtarEnvs("MinAtar/Breakout", 2, seed=4)
    env.reset()
    for t in range(1, 200):
        _, _, term, trunc, _ = env.step(actions)
        if term[0]:
            break
    assert term[0] and not trunc[0]
    capped = MinAtarEnvs("MinAtar/Breakout", 2, seed=4, max_episode_steps=t)
    capped.reset()
    for _ in range(t):
        _, _, term, trunc, info = capped.step(actions)
    assert term[0] and not trunc[0] and info.game_end[0]


def test_freeway_time_limit_is_truncation():
    env = MinAtarEnvs("MinAtar/Freeway", 3, seed=0, mode="eval", max_episode_steps=5)
    env.reset()
    for t in range(1, 16):
        _, reward, term, trunc, info = env.step(np.full(3, 1))  # always "up"
        assert not term.any()
        assert trunc.all() == (t % 5 == 0) and trunc.any() == (t % 5 == 0)
        np.testing.assert_array_equal(info.game_end, trunc)


def test_determinism_and_action_checks():
    def play(env, seed=None):
        out = [env.reset(seed)]
        rng = np.random.default_rng(5)
        for _ in range(60):
            frames, reward, term, trunc, info = env.step(rng.integers(0, 6, env.num_envs))
            out += [frames, reward, term, trunc, info.game_end, info.game_return]
        return out

    a = MinAtarEnvs("MinAtar/Seaquest", 3, seed=11)
    b = MinAtarEnvs("MinAtar/Seaquest", 3, seed=11)
    first = play(a)
    for x, y in zip(first, play(b)):
        np.testing.assert_array_equal(x, y)
    for x, y in zip(first, play(a, 11)):  # reset(seed) replays the same games
        np.testing.assert_array_equal(x, y)
    other = play(a, 12)
    assert any(not np.array_equal(x, y) for x, y in zip(first, other))

    with pytest.raises(ValueError, match="lie in"):
        a.step(np.array([0, 1, 6]))
    with pytest.raises(ValueError, match="expected 3 actions"):
        a.step(np.array([0, 1]))
    with pytest.raises(TypeError):
        a.step(np.array([0.0, 1.0, 2.0]))
    with pytest.raises(RuntimeError):
        MinAtarEnvs("MinAtar/Seaquest", 3, seed=0).step(np.zeros(3, int))


def test_sticky_actions():
    """MinAtar's sticky actions: with probability 1 every step repeats the previous action,
    which is NOOP (0) from the first game's start, so the chosen actions are ignored; with
    probability 0 the chosen actions are played."""
    import jax

    always = MinAtarFunctional("Breakout", 4, sticky_action_prob=1.0)
    never = MinAtarFunctional("Breakout", 4, sticky_action_prob=0.0)
    key = jax.random.PRNGKey(3)
    s_always, _ = always.init(key)
    s_always_noop, _ = always.init(key)
    s_never, _ = never.init(key)
    s_noop, _ = never.init(key)
    step_always, step_never = jax.jit(always.step), jax.jit(never.step)
    rng = np.random.default_rng(0)
    differs = False
    for t in range(40):
        k = jax.random.PRNGKey(100 + t)
        chosen = rng.integers(1, 3, 4)
        s_always, out_always = step_always(k, s_always, chosen)
        s_always_noop, out_always_noop = step_always(k, s_always_noop, np.zeros(4, int))
        s_noop, out_noop = step_never(k, s_noop, np.zeros(4, int))
        s_never, out_never = step_never(k, s_never, chosen)
        np.testing.assert_array_equal(out_always.frame, out_always_noop.frame)
        differs |= not np.array_equal(out_never.frame, out_noop.frame)
    assert differs  # the chosen actions move the paddle when nothing sticks
    assert np.all(np.asarray(s_always.game.last_action) == 0)
    np.testing.assert_array_equal(np.asarray(s_never.game.last_action), chosen)  # the action played
    with pytest.raises(EnvError, match="sticky_action_prob"):
        MinAtarFunctional("Breakout", 1, sticky_action_prob=1.5)


def test_with_block_closes_the_envs():
    with MinAtarEnvs("MinAtar/Breakout", 2, seed=0) as envs:
        envs.reset(seed=0)
        assert envs.observation().shape == (2, 10, 10, 4)
    assert envs._state is None
