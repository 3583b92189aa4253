"""Planning in the true simulator (agents/envs/minatar.py MinAtarSimulator, planner.model
"simulator"): the game's own step function as a WorldModel, through the same ``dreamer.plan``
entry point as a learned model, and an agent that acts on env states in the loop."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.efficientzero import make_agent
from agents.efficientzero.agent import make_model
from agents.efficientzero.presets import get_preset
from agents.envs.minatar import MinAtarFunctional, MinAtarSimulator
from dreamer import PlannerConfig, plan
from dreamer.world_model import InitialOutput


class ConstantPredictor:
    """A predictor with value ``v`` everywhere and a uniform prior: the search's Q values are
    then the simulator's rewards and discounts alone."""

    def __init__(self, num_actions: int, v: float = 0.0):
        self.num_actions, self.v = num_actions, v

    def initial_inference(self, params, frames):
        b = frames.shape[0]
        return InitialOutput(None, jnp.full((b,), self.v), jnp.zeros((b, self.num_actions)))


def advanced_state(game: str, n: int, steps: int, seed: int = 0):
    fenv = MinAtarFunctional(game, n, sticky_action_prob=0.0)

    def run(key):
        state, _ = fenv.init(key)

        def body(state, k):
            actions = jax.random.randint(jax.random.fold_in(k, 1), (n,), 0, fenv.spec.num_actions)
            return fenv.step(k, state, actions)[0], None

        return jax.lax.scan(body, state, jax.random.split(jax.random.fold_in(key, 7), steps))[0]

    return fenv, jax.jit(run)(jax.random.PRNGKey(seed))


@pytest.mark.parametrize("game", ["Breakout", "Seaquest"])
def test_encoding_round_trips_and_renders_the_frames(game):
    fenv, state = advanced_state(game, 3, 25)
    sim = MinAtarSimulator(game, ConstantPredictor(fenv.spec.num_actions))
    flat = sim.encode(state)
    assert flat.shape == (3, *sim.observation_shape) and flat.dtype == jnp.float32
    back = jax.vmap(sim._unravel)(flat)
    for a, b in zip(jax.tree_util.tree_leaves(back), jax.tree_util.tree_leaves(state.game.env_state)):
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(np.asarray(sim._frames(back)), np.asarray(state.frame))


def test_recurrent_step_is_the_games_step():
    """One model step is gymnax's own transition: the next frame, reward and end of game."""
    game, n = "Breakout", 4
    fenv, state = advanced_state(game, n, 10)
    sim = MinAtarSimulator(game, ConstantPredictor(fenv.spec.num_actions))
    action = jnp.array([0, 1, 2, 1], jnp.int32)
    out = sim.recurrent_inference(None, sim.encode(state), action)
    inner = state.game.env_state
    states = jax.vmap(sim._unravel)(out.state)
    step = jax.jit(lambda k, s, a: sim.env.step_env(k, s, a, sim.params))
    frames = np.asarray(sim._frames(states))
    for i in range(n):
        one = jax.tree_util.tree_map(lambda x: x[i], inner)
        key = jax.random.fold_in(jax.random.fold_in(jax.random.PRNGKey(0), int(one.time)), int(action[i]))
        obs, nxt, reward, done, _ = step(key, one, action[i])
        np.testing.assert_array_equal(frames[i], np.asarray(obs).astype(bool))
        assert float(out.reward[i]) == float(reward)
        assert float(out.discount[i]) == 1.0 - float(done)


def test_simulator_plans_through_the_same_entry_point_as_a_learned_model():
    """``dreamer.plan`` searches the learned model and the simulator alike; in the simulator
    the root's Q values are the game's own one-step rewards (with a zero-value predictor),
    so a search visiting every root action finds the one that scores."""
    game = "Breakout"
    cfg = get_preset("minatar")
    fenv, state = advanced_state(game, 64, 40, seed=3)
    model = make_model(cfg, fenv.spec)
    params = model.init(jax.random.PRNGKey(0))
    planner = PlannerConfig(search="gumbel", num_simulations=fenv.spec.num_actions,
                            max_num_considered_actions=fenv.spec.num_actions, gumbel_scale=0.0, discount=0.99)
    learned = plan(params, jax.random.PRNGKey(1), state.frame, model=model, config=planner)
    sim = MinAtarSimulator(game, ConstantPredictor(fenv.spec.num_actions))
    true = plan(None, jax.random.PRNGKey(1), sim.encode(state), model=sim, config=planner)
    assert learned.action_weights.shape == true.action_weights.shape == (64, fenv.spec.num_actions)
    step = jax.jit(lambda x, a: sim.recurrent_inference(None, x, jnp.full((64,), a, jnp.int32)).reward)
    rewards = np.stack([np.asarray(step(sim.encode(state), a)) for a in range(fenv.spec.num_actions)], -1)
    np.testing.assert_allclose(np.asarray(true.tree.children_rewards[:, 0]), rewards)
    scoring = rewards.max(-1) > 0
    assert scoring.any(), "no state of the batch can score in one step: pick other seeds"
    assert (rewards[scoring, np.asarray(true.action)[scoring]] > 0).all()


@pytest.mark.slow  # a whole fused-loop run
def test_agent_planning_in_the_simulator_trains_in_the_fused_loop(tmp_path):
    """planner.model="simulator": the agent acts on env states (acts_on), the loop passes them,
    training and the compiled evaluation run; a host env or policy reanalysis is refused."""
    from agents.envs import make as make_envs
    from agents.loop import train

    cfg = get_preset("minatar")
    cfg = cfg.replace(
        env=dataclasses.replace(cfg.env, num_envs=4, num_eval_envs=2, eval_episodes=2, max_episode_steps=50,
                                eval_max_episode_steps=50),
        network=dataclasses.replace(cfg.network, latent_dim=16, hidden=(32,), head_hidden=(16,), lstm_hidden=8,
                                    projection_hidden=16, projection_out=16, predictor_hidden=8),
        planner=dataclasses.replace(cfg.planner, model="simulator", num_simulations=4, max_num_considered_actions=2),
        replay=dataclasses.replace(cfg.replay, capacity=2_000, batch_size=16, min_size=64),
        loop=dataclasses.replace(cfg.loop, env_steps=256, eval_every=256, checkpoint_every_s=1e9),
    )
    agent = make_agent(cfg, MinAtarFunctional("Breakout", 4).spec)
    assert agent.acts_on == "env_state"
    counters = train(cfg, make_agent, make_envs, str(tmp_path / "run"), progress=False, tensorboard=False)
    assert counters.env_steps == 256 and counters.evaluations == 1 and counters.updates > 0
    with pytest.raises(ValueError, match="policy reanalysis needs the learned model"):
        cfg.replace(learner=dataclasses.replace(cfg.learner, reanalyze="sweep"))
