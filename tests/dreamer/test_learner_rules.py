"""EfficientZero's rules in the learner that a reading against EfficientZero and V2 found
missing: the 1/K gradient scale, reanalysis with the target params, independent
augmentations of the online and target branches, and the policy-target diagnostics."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from agents.efficientzero.presets import debug
from dreamer import Learner, replay as replay_lib
from dreamer.augment import augment_branches
from dreamer.losses import loss_fn
from dreamer.networks import EfficientZeroModel

OBS_DIM, NUM_ACTIONS, NUM_ENVS = 4, 2, 4


def config(**learner):
    cfg = debug()
    lc = dataclasses.replace(cfg.learner, warmup_updates=1, target_update_interval=1000, **learner)
    return cfg.replace(learner=lc, replay=dataclasses.replace(cfg.replay, capacity=NUM_ENVS * 32, min_size=16))


MODEL = EfficientZeroModel(debug().network, (OBS_DIM,), NUM_ACTIONS)


def filled_replay(cfg, steps=40, seed=0):
    rng = np.random.default_rng(seed)
    state = replay_lib.init(NUM_ENVS, cfg.replay.capacity, (OBS_DIM,), jnp.float32, NUM_ACTIONS)
    first = np.ones(NUM_ENVS, bool)
    for _ in range(steps):
        terminal = rng.random(NUM_ENVS) < 0.1
        state = replay_lib.add(
            state, frame=jnp.asarray(rng.normal(size=(NUM_ENVS, OBS_DIM)), jnp.float32),
            action=jnp.asarray(rng.integers(0, NUM_ACTIONS, NUM_ENVS), jnp.int32),
            reward=jnp.ones(NUM_ENVS), terminal=jnp.asarray(terminal), truncated=jnp.zeros(NUM_ENVS, bool),
            first=jnp.asarray(first), policy=jnp.full((NUM_ENVS, NUM_ACTIONS), 1.0 / NUM_ACTIONS),
            value=jnp.zeros(NUM_ENVS),
        )
        first = terminal
    return state


def perturbed(params, scale=0.1, seed=0):
    leaves, tree = jax.tree_util.tree_flatten(params)
    rng = np.random.default_rng(seed)
    return jax.tree_util.tree_unflatten(tree, [x + scale * rng.normal(size=x.shape).astype(np.float32) for x in leaves])


def test_loss_gradient_is_scaled_by_one_over_k():
    scaled_cfg, plain_cfg = config(scale_loss_by_unroll=True), config(scale_loss_by_unroll=False)
    learner = Learner(MODEL, scaled_cfg.learner, scaled_cfg.replay, scaled_cfg.planner)
    params = perturbed(learner.init(jax.random.PRNGKey(0)).params)
    batch, _, _ = jax.jit(learner.make_batch)(params, params, filled_replay(scaled_cfg), jax.random.PRNGKey(1),
                                              jnp.float32(0.4))
    k = scaled_cfg.learner.unroll_steps

    @jax.jit  # one compiled program for both: the loss's op-by-op gradient is far slower on a CPU
    def grads_and_totals(p):
        return [jax.grad(lambda q, c=c: loss_fn(q, MODEL, batch, c.learner), has_aux=True)(p)
                for c in (scaled_cfg, plain_cfg)]

    (g_scaled, aux_scaled), (g_plain, aux_plain) = grads_and_totals(params)
    norm_scaled, norm_plain = optax.tree.norm(g_scaled), optax.tree.norm(g_plain)
    assert float(norm_plain) > 0
    np.testing.assert_allclose(float(norm_scaled), float(norm_plain) / k, rtol=1e-5)
    for a, b in zip(jax.tree_util.tree_leaves(g_scaled), jax.tree_util.tree_leaves(g_plain)):
        np.testing.assert_allclose(np.asarray(a) * k, np.asarray(b), rtol=2e-4, atol=1e-7)
    # The logged loss stays the unscaled total.
    m_scaled, m_plain = aux_scaled[0]["loss/total"], aux_plain[0]["loss/total"]
    assert float(m_scaled) == pytest.approx(float(m_plain), rel=1e-6)


@pytest.mark.parametrize("which", ["target", "online"])
def test_reanalysis_searches_with_the_named_params(which):
    """The re-searched policy targets depend on the params ``reanalyze_with`` names and on
    no others (EfficientZero reanalyses with the target params)."""
    cfg = config(reanalyze_fraction=1.0, reanalyze_with=which)
    learner = Learner(MODEL, cfg.learner, cfg.replay, cfg.planner)
    state = learner.init(jax.random.PRNGKey(0))
    online, target = perturbed(state.params, 0.5, seed=1), perturbed(state.params, 0.5, seed=2)
    replay = filled_replay(cfg)
    make = jax.jit(learner.make_batch)

    def policy(online_params, target_params):
        return np.asarray(make(online_params, target_params, replay, jax.random.PRNGKey(3), jnp.float32(0.4))[0].policy)

    base = policy(online, target)
    moved_online = policy(perturbed(online, 0.5, seed=9), target)
    moved_target = policy(online, perturbed(target, 0.5, seed=9))
    unchanged, changed = (moved_online, moved_target) if which == "target" else (moved_target, moved_online)
    np.testing.assert_allclose(unchanged, base, rtol=1e-5, atol=1e-6)
    assert np.max(np.abs(changed - base)) > 1e-3


def test_online_and_target_branches_are_augmented_independently():
    rng = np.random.default_rng(0)
    # Frames whose content differs from place to place, identical at every position of the
    # unroll, so a shared draw would give identical views at positions 0 and 1.
    frame = rng.integers(0, 255, size=(1, 1, 24, 24, 3)).astype(np.uint8)
    obs = jnp.asarray(np.repeat(np.repeat(frame, 64, axis=0), 3, axis=1))
    out = np.asarray(augment_branches(jax.random.PRNGKey(0), obs))
    differs = [not np.allclose(out[i, 0], out[i, 1]) for i in range(64)]
    assert np.mean(differs) > 0.9
    # Within the target branch one draw per sample is shared by its positions.
    np.testing.assert_allclose(out[:, 1], out[:, 2])


def test_policy_target_entropy_is_logged():
    cfg = config(reanalyze_fraction=0.0)
    learner = Learner(MODEL, cfg.learner, cfg.replay, cfg.planner)
    state = learner.init(jax.random.PRNGKey(0))
    _, _, metrics = jax.jit(learner.make_batch)(state.params, state.target_params, filled_replay(cfg),
                                                jax.random.PRNGKey(1), jnp.float32(0.4))
    # The stored acting policies are uniform over 2 actions: entropy log 2.
    assert float(metrics["search/policy_target_entropy"]) == pytest.approx(np.log(2), rel=1e-5)
