"""Runs trained side by side (agents.loop.train_runs): several seeds of one config vmapped in
one compiled program on a pure JAX env, each with its own run directory, matching the runs
that ``train`` makes one at a time; and the pure JAX evaluation both use."""

from __future__ import annotations

import functools
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from fakes import make_fake_fused_envs
from helpers import debug_config, read_metrics

from agents.efficientzero import make_agent
from agents.loop import (EvalResult, evaluate, evaluate_functional, explore, open_run, play_games, train,
                         train_runs)
from dreamer.agent import RUNS_AXIS, ActOutput, Agent, in_lockstep

LOSSES = ("loss/value", "loss/policy", "loss/reward", "loss/consistency")


def tiny(seed=0, learner=None, **loop):
    """The debug preset on the fake corridor: 4 envs, a few train calls, two evaluations."""
    return debug_config(
        seed=seed,
        env={"num_envs": 4, "num_eval_envs": 2, "eval_episodes": 4},
        replay={"min_size": 32, "batch_size": 16, "capacity": 1_000},
        learner=learner or {},
        loop={"env_steps": 192, "eval_every": 96, "log_every_s": 1e-9, "checkpoint_every_s": 1e9, **loop},
    )


def final_params(run_dir, cfg):
    from agents.loop import restore_params

    agent = make_agent(cfg, make_fake_fused_envs(cfg.env, "train", 0).spec)
    params, _ = restore_params(agent, cfg, run_dir)
    return jax.tree_util.tree_leaves(params)


def trained_side_by_side_and_alone(tmp_path, cfgs):
    group = [str(tmp_path / f"group_s{c.seed}") for c in cfgs]
    alone = [str(tmp_path / f"alone_s{c.seed}") for c in cfgs]
    counters = train_runs(cfgs, make_agent, make_fake_fused_envs, group, progress=False, tensorboard=False)
    for cfg, run_dir in zip(cfgs, alone):
        train(cfg, make_agent, make_fake_fused_envs, run_dir, progress=False, tensorboard=False)
    return counters, group, alone


@pytest.mark.slow  # four whole runs; about 75 s on 2 cores
def test_two_runs_side_by_side_match_two_runs_alone(tmp_path):
    """Over a short run (64 env steps of training, a target refresh with a reanalysis sweep
    every 4 updates): the same losses and final params as the seeds trained one at a time,
    within float tolerance. Longer runs drift apart, as runs on two machines do: float
    rounding differs between the vmapped and the single program, and once it flips a
    near-tied action choice the runs see other data."""
    cfgs = [tiny(s, {"reanalyze": "sweep", "target_update_interval": 4}, env_steps=96) for s in (0, 1)]
    counters, group, alone = trained_side_by_side_and_alone(tmp_path, cfgs)
    assert [c.env_steps for c in counters] == [96, 96] and counters[0].updates == counters[1].updates > 8
    for cfg, g, a in zip(cfgs, group, alone):
        # the same directory layout as a run trained alone
        assert {"config.json", "run.json", "metrics.jsonl", "summary.json", "checkpoints"} <= set(os.listdir(g))
        assert json.load(open(os.path.join(g, "config.json")))["seed"] == cfg.seed
        mine, theirs = read_metrics(g), read_metrics(a)
        assert [r["env_steps"] for r in mine] == [r["env_steps"] for r in theirs]
        losses = [(r[k], s[k]) for r, s in zip(mine, theirs) for k in LOSSES if k in s]
        assert len(losses) >= 8
        np.testing.assert_allclose(*np.array(losses).T, rtol=1e-4, atol=1e-5)
        # Adam divides by the gradient's running scale, so near-zero gradients (zero-initialised
        # heads) turn float rounding into parameter differences up to a few % of a step (lr 3e-3)
        for x, y in zip(final_params(g, cfg), final_params(a, cfg)):
            np.testing.assert_allclose(x, y, rtol=1e-3, atol=1e-4)
    # and the two seeds really are different runs
    assert not all(np.allclose(x, y) for x, y in zip(final_params(group[0], cfgs[0]), final_params(group[1], cfgs[1])))
    # with a longer budget, the group resumes together, and each of its runs resumes alone
    longer = [tiny(c.seed, {"reanalyze": "sweep", "target_update_interval": 4}) for c in cfgs]
    run = open_run(longer, make_agent, make_fake_fused_envs, group, progress=False, tensorboard=False)
    assert run.resumed and [b.counters.env_steps for b in run.books] == [96, 96]
    alone_again = open_run(longer[1], make_agent, make_fake_fused_envs, group[1], progress=False, tensorboard=False)
    assert alone_again.resumed and alone_again.counters.env_steps == 96
    for x, y in zip(jax.tree_util.tree_leaves(alone_again.agent.params(alone_again.state)), final_params(group[1], cfgs[1])):
        np.testing.assert_array_equal(x, y)


def test_groups_that_cannot_share_a_program_are_refused(tmp_path):
    dirs = [str(tmp_path / "a"), str(tmp_path / "b")]
    other = tiny(1, {"td_steps": 3})
    with pytest.raises(ValueError, match="differ only in their seed; learner.td_steps"):
        open_run([tiny(0), other], make_agent, make_fake_fused_envs, dirs)
    with pytest.raises(ValueError, match="distinct seeds"):
        open_run([tiny(0), tiny(0)], make_agent, make_fake_fused_envs, dirs)
    with pytest.raises(ValueError, match="distinct run directories"):
        open_run([tiny(0), tiny(1)], make_agent, make_fake_fused_envs, [dirs[0], dirs[0]])
    from fakes import make_fake_envs  # host envs only

    with pytest.raises(ValueError, match="pure JAX env"):
        open_run([tiny(0), tiny(1)], make_agent, make_fake_envs, dirs)


def test_in_lockstep_keeps_a_branch_a_branch_under_the_runs_vmap():
    def refresh(step, x):
        return jax.lax.cond(in_lockstep(step % 4 == 0), lambda v: v + 1.0, lambda v: v, x)

    jaxpr = jax.make_jaxpr(jax.vmap(refresh, axis_name=RUNS_AXIS))(jnp.array([4, 4]), jnp.zeros(2))
    assert any(e.primitive.name == "cond" for e in jaxpr.jaxpr.eqns)
    # a per-run predicate, as without in_lockstep, makes jax compute both branches (a select)
    plain = jax.make_jaxpr(jax.vmap(lambda s, x: jax.lax.cond(s % 4 == 0, lambda v: v + 1.0, lambda v: v, x)))(
        jnp.array([4, 4]), jnp.zeros(2))
    assert not any(e.primitive.name == "cond" for e in plain.jaxpr.eqns)
    assert float(refresh(jnp.int32(8), jnp.float32(0.0))) == 1.0  # outside the vmap: pred itself


def test_functional_evaluation_plays_the_host_evaluation(tmp_path):
    """On MinAtar, the compiled evaluation plays exactly the games of the host loop."""
    pytest.importorskip("gymnax")
    from agents.envs.minatar import MinAtarEnvs

    envs = MinAtarEnvs("MinAtar/Breakout", 3, seed=0, mode="eval", max_episode_steps=60)

    def policy(params, rng, obs):  # a random policy that depends on the frame, so frames matter
        logits = jnp.sum(obs.reshape(obs.shape[0], -1), -1, keepdims=True) * params
        action = jax.random.categorical(rng, jnp.tile(logits, (1, 3)) + jnp.arange(3.0))
        zeros = jnp.zeros(obs.shape[0])
        return ActOutput(action, jax.nn.softmax(jnp.tile(logits, (1, 3))), zeros, zeros)  # only .action is read

    host = evaluate(jax.jit(policy), jnp.float32(0.1), envs, episodes=7, rng=jax.random.PRNGKey(3), seed=11)
    pure = evaluate_functional(policy, jnp.float32(0.1), envs.functional, episodes=7, rng=jax.random.PRNGKey(3),
                               seed=11)
    assert len(pure.returns) == 7
    assert pure.returns == host.returns and pure.capped == host.capped
    np.testing.assert_array_equal(pure.action_counts, host.action_counts)
    # vmapped over two runs with their own seeds: each row is that seed's evaluation
    play = jax.jit(jax.vmap(functools.partial(play_games, policy, envs.functional, 3)))
    out = play(jnp.array([0.1, 0.1]), jnp.stack([jax.random.PRNGKey(3)] * 2), jnp.array([11, 12]))
    assert EvalResult.from_arrays(*jax.tree_util.tree_map(lambda x: x[0], out), 7).returns == host.returns


def test_explore_replaces_actions_at_rate_epsilon():
    action = jnp.zeros(20_000, jnp.int32)
    assert np.array_equal(explore(jax.random.PRNGKey(0), action, 0.0, 4), action)
    counts = np.bincount(np.asarray(explore(jax.random.PRNGKey(0), action, 1.0, 4)), minlength=4) / action.size
    np.testing.assert_allclose(counts, 0.25, atol=0.02)
    changed = np.mean(np.asarray(explore(jax.random.PRNGKey(1), action, 0.4, 4)) != 0)
    np.testing.assert_allclose(changed, 0.4 * 3 / 4, atol=0.02)  # a random pick may be the same action


def constant_agent(num_envs: int, num_actions: int, length: int) -> Agent:
    """An agent that always plays action 0 and records the actions it is told were played."""

    def act(state, rng, obs, temperature):
        n = obs.shape[0]  # the eval envs may be fewer than the training envs
        zeros = jnp.zeros(n, jnp.float32)
        return ActOutput(jnp.zeros(n, jnp.int32), jnp.full((n, num_actions), 1.0 / num_actions), zeros, zeros)

    def observe(state, t):
        played, step = state
        return played.at[step % length].set(t.action.astype(jnp.int32)), step + 1

    return Agent(init=lambda rng: (jnp.full((length, num_envs), -1, jnp.int32), jnp.int32(0)), act=act,
                 greedy=lambda params, rng, obs: act(None, rng, obs, 0.0), observe=observe,
                 train=lambda state: (state, {}), params=lambda state: None)


@pytest.mark.parametrize("fused", [True, False])
def test_epsilon_schedule_plays_and_stores_random_actions(tmp_path, fused):
    """An agent that always picks action 0: with epsilon 0 the envs play and store only 0; with
    epsilon 0.6, that share of steps plays a uniformly random action, and that is what is stored."""
    from fakes import make_fake_envs

    played = {}
    for eps in (0.0, 0.6):
        cfg = tiny(env_steps=2_000, eval_every=10**6, epsilon_schedule=((1.0, eps),))
        make = lambda c, spec: constant_agent(c.env.num_envs, spec.num_actions, 500)  # noqa: E731
        run = open_run(cfg, make, make_fake_fused_envs if fused else make_fake_envs, str(tmp_path / f"e{eps}"),
                       progress=False, tensorboard=False)
        run.collect(stop=None)
        played[eps] = np.asarray(run.state[0]).reshape(-1)
    assert np.all(played[0.0] == 0)
    share = np.bincount(played[0.6], minlength=3) / played[0.6].size
    np.testing.assert_allclose(share, [0.4 + 0.6 / 3, 0.2, 0.2], atol=0.03)
