"""Reanalysis sweeps (dreamer/reanalyze.py): every stored position re-planned once, the same
targets a per-batch reanalysis with the same params would give."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents.efficientzero.presets import debug
from dreamer import Learner
from dreamer import replay as replay_lib
from dreamer import targets as targets_lib
from dreamer.networks import EfficientZeroModel
from dreamer.planner import plan

OBS_DIM, NUM_ACTIONS, NUM_ENVS, LENGTH = 4, 2, 3, 16


def config(reanalyze):
    cfg = debug()
    # A deterministic search (no root noise), so two searches of one position agree.
    planner = dataclasses.replace(cfg.planner, gumbel_scale=0.0, dirichlet_fraction=0.0)
    lc = dataclasses.replace(cfg.learner, reanalyze=reanalyze, reanalyze_fraction=1.0, sweep_chunk=8,
                             target_update_interval=2, updates_per_call=2)
    return cfg.replace(planner=planner, learner=lc,
                       replay=dataclasses.replace(cfg.replay, capacity=NUM_ENVS * LENGTH, min_size=16, batch_size=8))


MODEL = EfficientZeroModel(debug().network, (OBS_DIM,), NUM_ACTIONS)


def params_of(seed):
    params = MODEL.init(jax.random.PRNGKey(seed))
    leaves, tree = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(tree, [x + 0.3 * rng.normal(size=x.shape).astype(np.float32) for x in leaves])


def filled(steps, seed=0):
    rng = np.random.default_rng(seed)
    state = replay_lib.init(NUM_ENVS, NUM_ENVS * LENGTH, (OBS_DIM,), jnp.float32, NUM_ACTIONS)
    first = np.ones(NUM_ENVS, bool)
    for _ in range(steps):
        terminal = rng.random(NUM_ENVS) < 0.1
        truncated = ~terminal & (rng.random(NUM_ENVS) < 0.05)
        state = replay_lib.add(
            state, frame=jnp.asarray(rng.normal(size=(NUM_ENVS, OBS_DIM)), jnp.float32),
            action=jnp.asarray(rng.integers(0, NUM_ACTIONS, NUM_ENVS), jnp.int32),
            reward=jnp.asarray(rng.random(NUM_ENVS), jnp.float32), terminal=jnp.asarray(terminal),
            truncated=jnp.asarray(truncated), first=jnp.asarray(first),
            policy=jnp.full((NUM_ENVS, NUM_ACTIONS), 0.5), value=jnp.asarray(rng.normal(size=NUM_ENVS), jnp.float32),
        )
        first = terminal | truncated
    return state


# a partly filled ring (slow: the wrapped one covers its code too), and a wrapped one
@pytest.mark.parametrize("steps", [pytest.param(11, marks=pytest.mark.slow), LENGTH + 7])
def test_sweep_replans_every_stored_position(steps):
    cfg = config("sweep")
    learner = Learner(MODEL, cfg.learner, cfg.replay, cfg.planner)
    params = params_of(1)
    before = filled(steps)
    after, metrics = jax.jit(learner.sweep)(params, before, jax.random.PRNGKey(0), jnp.int32(7))
    written = np.asarray(before.priority) > 0
    assert written.sum() == NUM_ENVS * min(steps, LENGTH)
    np.testing.assert_array_equal(np.asarray(after.version)[written], 7)
    assert float(metrics["reanalyze/roots"]) >= written.sum()
    # Each written position holds the search of its own observation with these params.
    cols = np.flatnonzero(written[0])
    env = np.repeat(np.arange(NUM_ENVS), cols.size)
    col = np.tile(cols, NUM_ENVS)
    absolute = np.asarray(replay_lib.latest_step(before, jnp.asarray(col)))
    obs = replay_lib.stacked_frames(before, jnp.asarray(env), jnp.asarray(absolute), 1)
    out = plan(params, jax.random.PRNGKey(5), obs, model=MODEL, config=cfg.planner)
    # atol 1e-4: the sweep searches chunks of another batch size than this call, XLA blocks its
    # matmuls per shape, and a search policy amplifies float32 rounding (up to 3e-5 seen on an AMD EPYC)
    np.testing.assert_allclose(np.asarray(after.policy)[env, col], np.asarray(out.action_weights), atol=1e-4)
    np.testing.assert_allclose(np.asarray(after.value)[env, col], np.asarray(out.predicted_value), atol=1e-5)
    # Priorities: the n-step TD error of the stored values, written slots only.
    window = replay_lib.window_at(after, jnp.asarray(env), jnp.asarray(absolute), cfg.learner.td_steps + 1)
    tp = targets_lib.plan_targets(window, unroll_steps=0, td_steps=cfg.learner.td_steps,
                                  td_age_step=cfg.learner.td_age_step, discount=cfg.planner.discount, prefix_horizon=1)
    boot_abs = absolute + np.asarray(tp.bootstrap_index[:, 0])
    boot = np.asarray(after.value)[env, boot_abs % LENGTH]
    target = np.asarray(tp.reward_sum[:, 0]) + np.asarray(tp.bootstrap_discount[:, 0]) * boot
    want = np.maximum(np.abs(np.asarray(after.value)[env, col] - target), cfg.replay.priority_eps)
    np.testing.assert_allclose(np.asarray(after.priority)[env, col], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(np.asarray(after.priority)[~written], 0.0)


def test_swept_targets_equal_per_batch_reanalysis_with_the_same_params():
    """Right after a sweep with params P, the gathered targets are those a per-batch
    reanalysis with target params P computes: the sweep changes the cost, not the targets."""
    sweep_cfg, batch_cfg = config("sweep"), config("batch")
    sweeper = Learner(MODEL, sweep_cfg.learner, sweep_cfg.replay, sweep_cfg.planner)
    batcher = Learner(MODEL, batch_cfg.learner, batch_cfg.replay, batch_cfg.planner)
    params = params_of(2)
    replay, _ = jax.jit(sweeper.sweep)(params, filled(LENGTH + 5, seed=3), jax.random.PRNGKey(0), jnp.int32(1))
    args = (params, params, replay, jax.random.PRNGKey(4), jnp.float32(0.4))
    swept, window_s, _ = jax.jit(sweeper.make_batch)(*args)
    fresh, window_b, _ = jax.jit(batcher.make_batch)(*args)
    np.testing.assert_array_equal(np.asarray(window_s.start), np.asarray(window_b.start))
    np.testing.assert_allclose(np.asarray(swept.value), np.asarray(fresh.value), rtol=1e-5, atol=1e-5)
    mask = np.asarray(fresh.policy_mask) > 0
    np.testing.assert_allclose(np.asarray(swept.policy)[mask], np.asarray(fresh.policy)[mask], atol=1e-5)


def test_a_partial_sweep_replans_its_share_of_the_replay_in_turn():
    """``sweep_fraction=0.25``: each sweep re-plans a quarter of the chunks (here 2 of 8, of 2
    ring columns each), the next quarter at the next sweep, so four sweeps cover the replay
    once; positions it leaves keep their targets and priorities."""
    cfg = config("sweep")
    cfg = cfg.replace(learner=dataclasses.replace(cfg.learner, sweep_fraction=0.25))
    learner = Learner(MODEL, cfg.learner, cfg.replay, cfg.planner)
    replay, params = filled(LENGTH, seed=7), params_of(3)
    sweep = jax.jit(learner.sweep)
    first, metrics = sweep(params, replay, jax.random.PRNGKey(0), jnp.int32(1))
    version = np.asarray(first.version)
    assert np.all(version[:, 4:8] == 1) and np.all(np.delete(version, range(4, 8), axis=1) == -1)
    assert float(metrics["reanalyze/roots"]) == NUM_ENVS * 4
    untouched = np.delete(np.arange(LENGTH), range(4, 8))
    np.testing.assert_array_equal(np.asarray(first.policy)[:, untouched], np.asarray(replay.policy)[:, untouched])
    np.testing.assert_array_equal(np.asarray(first.priority)[:, untouched], np.asarray(replay.priority)[:, untouched])
    state = first
    for v in (2, 3, 4):
        state, _ = sweep(params, state, jax.random.PRNGKey(v), jnp.int32(v))
    version = np.asarray(state.version)
    assert sorted(set(version.reshape(-1).tolist())) == [1, 2, 3, 4]
    assert all(len(set(version[:, c:c + 4].reshape(-1).tolist())) == 1 for c in range(0, LENGTH, 4))


def test_train_refreshes_the_target_and_sweeps_once_per_period():
    cfg = config("sweep")
    learner = Learner(MODEL, cfg.learner, cfg.replay, cfg.planner)
    state = learner.init(jax.random.PRNGKey(0))
    replay = filled(LENGTH, seed=5)
    train = jax.jit(learner.train)
    state, replay, _ = train(state, replay)  # 2 updates: step 2, a multiple of the period 2
    assert int(state.step) == 2
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(state.target_params)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.asarray(replay.version)[np.asarray(replay.priority) > 0], 1)


def test_swept_consistency_targets_are_the_root_projections():
    """``consistency_targets="swept"``: a sweep stores each position's projection of its own
    representation (target params), and batches gather it for unroll steps 1..K, masked
    where no sweep has written the position since it was stored."""
    cfg = config("sweep")
    cfg = cfg.replace(learner=dataclasses.replace(cfg.learner, consistency_targets="swept"))
    learner = Learner(MODEL, cfg.learner, cfg.replay, cfg.planner)
    params = params_of(4)
    proj_dim = MODEL.project(params, MODEL.represent(params, jnp.zeros((1, OBS_DIM))), False).shape[-1]
    before = filled(LENGTH + 3, seed=6)
    before = before._replace(projection=jnp.zeros(before.version.shape + (proj_dim,)))
    after, _ = jax.jit(learner.sweep)(params, before, jax.random.PRNGKey(0), jnp.int32(2))
    env, col = np.array([0, 1, 2]), np.array([3, 7, 11])
    absolute = np.asarray(replay_lib.latest_step(after, jnp.asarray(col)))
    obs = replay_lib.stacked_frames(after, jnp.asarray(env), jnp.asarray(absolute), 1)
    want = MODEL.project(params, MODEL.represent(params, obs), with_predictor=False)
    np.testing.assert_allclose(np.asarray(after.projection)[env, col], np.asarray(want), rtol=1e-4, atol=1e-5)
    # A position written after the sweep is masked out of the consistency loss.
    after = replay_lib.add(after, frame=jnp.zeros((NUM_ENVS, OBS_DIM)), action=jnp.zeros(NUM_ENVS, jnp.int32),
                           reward=jnp.zeros(NUM_ENVS), terminal=jnp.zeros(NUM_ENVS, bool),
                           truncated=jnp.zeros(NUM_ENVS, bool), first=jnp.zeros(NUM_ENVS, bool),
                           policy=jnp.full((NUM_ENVS, NUM_ACTIONS), 0.5), value=jnp.zeros(NUM_ENVS))
    batch, window, _ = jax.jit(learner.make_batch)(params, params, after, jax.random.PRNGKey(1), jnp.float32(0.4))
    positions = np.asarray(window.start)[:, None] + np.arange(1, cfg.learner.unroll_steps + 1)[None, :]
    fresh = positions == int(after.t) - 1
    np.testing.assert_array_equal(np.asarray(batch.consistency_mask), np.where(fresh, 0.0, 1.0))
    gathered = np.asarray(after.projection)[np.asarray(window.env)[:, None], positions % LENGTH]
    np.testing.assert_allclose(np.asarray(batch.consistency_target), gathered)
