"""Tests of the training loss (dreamer/losses.py) and the jitted learner programs (dreamer/learner.py).

Everything runs on the tiny ``debug`` preset (latent 16, hidden (32,), batch 16, 4
simulations) so the compiles stay short on a CPU.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from helpers import debug_config

from agents.efficientzero import make_agent
from agents.efficientzero.presets import debug
from agents.envs.base import EnvSpec
from dreamer import learner as learner_lib
from dreamer import replay as replay_lib
from dreamer.losses import cross_entropy, loss_fn, negative_cosine, scale_gradient
from dreamer.networks import EfficientZeroModel
from dreamer.scalar import Support

OBS_DIM, NUM_ACTIONS, NUM_ENVS, STEPS = 4, 2, 4, 40


# ---------------------------------------------------------------------------------------
# The pieces


def test_cross_entropy_is_minimal_at_the_target():
    support = Support(-10.0, 10.0, 21)
    targets = jnp.array([0.0, 0.37, -2.5, 7.3, 100.0])
    probs = support.encode(targets)
    perfect = jnp.log(jnp.maximum(probs, 1e-30))
    entropy = -jnp.sum(jnp.where(probs > 0, probs * jnp.log(jnp.maximum(probs, 1e-30)), 0.0), -1)
    ce = cross_entropy(perfect, probs)
    np.testing.assert_allclose(ce, entropy, atol=1e-5)
    assert float(ce[0]) == pytest.approx(0.0, abs=1e-5)  # a one-hot target: zero loss
    # The gradient w.r.t. the logits (softmax - p) vanishes there, and any other logits cost more.
    grad = jax.grad(lambda lg: jnp.sum(cross_entropy(lg, probs)))(perfect)
    np.testing.assert_allclose(grad, 0.0, atol=1e-5)
    other = perfect + jax.random.normal(jax.random.PRNGKey(0), perfect.shape)
    worse = np.asarray(cross_entropy(other, probs))
    assert np.all(worse[1:4] > np.asarray(entropy)[1:4] + 1e-3)  # two-hot targets
    assert np.all(worse >= np.asarray(entropy) - 1e-6)
    # Decoding the perfect logits gives the scalar back.
    np.testing.assert_allclose(support.decode_logits(perfect)[:4], targets[:4], rtol=1e-4, atol=1e-4)


def test_negative_cosine():
    a = jax.random.normal(jax.random.PRNGKey(1), (5, 8))
    np.testing.assert_allclose(negative_cosine(a, a), -1.0, atol=1e-6)
    np.testing.assert_allclose(negative_cosine(a, 3.0 * a), -1.0, atol=1e-6)  # scale-free
    np.testing.assert_allclose(negative_cosine(a, -a), 1.0, atol=1e-6)
    e = jnp.eye(8)
    np.testing.assert_allclose(negative_cosine(e[:2], e[2:4]), 0.0, atol=1e-7)
    assert np.all(np.isfinite(negative_cosine(jnp.zeros((2, 8)), a[:2])))  # zero vectors: no NaN
    grad_at_zero = jax.grad(lambda x: jnp.sum(negative_cosine(x, a[:2])))(jnp.zeros((2, 8)))
    assert np.all(np.isfinite(np.asarray(grad_at_zero)))


def test_scale_gradient_halves_gradients():
    x = {"a": jnp.array([1.0, -2.0, 3.0]), "b": jnp.array(0.5)}
    f = lambda t: jnp.sum(t["a"] ** 3) + t["b"] ** 2  # noqa: E731
    g = jax.grad(f)(x)
    g_half = jax.grad(lambda t: f(scale_gradient(t, 0.5)))(x)
    for key in x:
        np.testing.assert_allclose(g_half[key], 0.5 * g[key], rtol=1e-6)
    y = scale_gradient(x, 0.5)
    for key in x:  # identity forward
        np.testing.assert_array_equal(y[key], x[key])


# ---------------------------------------------------------------------------------------
# A tiny model, a small filled replay and a fixed batch


def tiny_config(**learner):
    return debug_config(learner=dict(learning_rate=3e-3, warmup_updates=1, target_update_interval=2, **learner),
                        replay={"capacity": NUM_ENVS * 32, "min_size": 16})


def filled_replay(cfg, seed=0):
    """``STEPS`` random steps per env; short episodes with terminals and truncations."""
    rng = np.random.default_rng(seed)
    state = replay_lib.init(NUM_ENVS, cfg.replay.capacity, (OBS_DIM,), jnp.float32, NUM_ACTIONS)
    add = jax.jit(replay_lib.add)
    first = np.ones(NUM_ENVS, bool)
    for _ in range(STEPS):
        terminal = rng.random(NUM_ENVS) < 0.08
        truncated = ~terminal & (rng.random(NUM_ENVS) < 0.04)
        policy = rng.dirichlet(np.ones(NUM_ACTIONS), NUM_ENVS).astype(np.float32)
        state = add(
            state,
            frame=jnp.asarray(rng.normal(size=(NUM_ENVS, OBS_DIM)), jnp.float32),
            action=jnp.asarray(rng.integers(0, NUM_ACTIONS, NUM_ENVS), jnp.int32),
            reward=jnp.asarray(rng.random(NUM_ENVS) < 0.7, jnp.float32),
            terminal=jnp.asarray(terminal),
            truncated=jnp.asarray(truncated),
            first=jnp.asarray(first),
            policy=jnp.asarray(policy),
            value=jnp.zeros(NUM_ENVS),
        )
        first = terminal | truncated
    return state


MODEL = EfficientZeroModel(debug().network, (OBS_DIM,), NUM_ACTIONS)


def learner_of(cfg):
    return learner_lib.Learner(MODEL, cfg.learner, cfg.replay, cfg.planner)


class TargetBranchModel:
    """``MODEL`` with the consistency-target branch of ``loss_fn`` reading ``target_params``.

    ``loss_fn`` calls ``represent`` on the ``B * K`` later observations and
    ``project(..., with_predictor=False)`` for the targets only; this proxy sends exactly
    those calls to ``target_params``. With ``target_params = params`` the loss is unchanged,
    the gradient w.r.t. ``params`` plus the one w.r.t. ``target_params`` is the true
    gradient (chain rule), and the one w.r.t. ``target_params`` is what flows through the
    target branch: it must be zero.
    """

    def __init__(self, model, target_params, target_batch):
        self._model, self._target_params, self._target_batch = model, target_params, target_batch

    def __getattr__(self, name):
        return getattr(self._model, name)

    def represent(self, params, obs):
        if obs.shape[0] == self._target_batch:
            params = self._target_params
        return self._model.represent(params, obs)

    def project(self, params, state, with_predictor=True):
        if not with_predictor:
            params = self._target_params
        return self._model.project(params, state, with_predictor)


@functools.lru_cache(maxsize=None)
def setup():
    """The config, a train state, a filled replay, a fixed batch and the jitted gradient."""
    cfg = tiny_config(reanalyze_fraction=0.0)
    learner = learner_of(cfg)
    state = jax.jit(learner.init)(jax.random.PRNGKey(0))
    replay = filled_replay(cfg)
    make = jax.jit(lambda params, target, rep, rng: learner.make_batch(params, target, rep, rng, jnp.float32(0.4))[0])
    batch = make(state.params, state.target_params, replay, jax.random.PRNGKey(1))
    b, k = batch.action.shape
    assert b != b * k  # the proxy tells the target branch by its batch size

    @jax.jit
    def loss_and_grads(params, target_params, obs, batch):
        """``loss, priorities, (d/d params, d/d target-branch params, d/d obs)``."""

        def f(p, tp, o):
            return loss_fn(p, TargetBranchModel(MODEL, tp, b * k), batch._replace(obs=o), cfg.learner)

        (loss, (_, priorities)), grads = jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(
            params, target_params, obs
        )
        return loss, priorities, grads

    return cfg, state, replay, batch, loss_and_grads


def test_batch_is_well_formed():
    cfg, _, _, batch, _ = setup()
    k, b = cfg.learner.unroll_steps, cfg.replay.batch_size
    assert batch.obs.shape == (b, k + 1, OBS_DIM)
    assert batch.value.shape == batch.value_mask.shape == batch.policy_mask.shape == (b, k + 1)
    assert batch.reward.shape == batch.reward_mask.shape == batch.action.shape == (b, k)
    for leaf in jax.tree_util.tree_leaves(batch):
        assert np.all(np.isfinite(np.asarray(leaf)))
    assert float(jnp.max(batch.weight)) == pytest.approx(1.0)
    # The fill has episode ends: some positions are masked out, some targets absorbing.
    assert 0 < float(jnp.mean(batch.policy_mask)) < 1


def test_no_gradient_flows_through_the_consistency_targets():
    cfg, state, _, batch, loss_and_grads = setup()
    # Move the params off their init (zero last layers) so every layer carries gradient.
    leaves, tree = jax.tree_util.tree_flatten(state.params)
    rng = np.random.default_rng(0)
    params = jax.tree_util.tree_unflatten(tree, [x + 0.1 * rng.normal(size=x.shape).astype(np.float32) for x in leaves])
    loss, _, (g_params, g_target, g_obs) = loss_and_grads(params, params, batch.obs, batch)
    # The proxy does not change the loss.
    real = jax.jit(lambda p: loss_fn(p, MODEL, batch, cfg.learner)[0])(params)
    np.testing.assert_allclose(loss, real, rtol=1e-5)
    # Nothing reaches the params through the target branch ...
    for path, g in jax.tree_util.tree_leaves_with_path(g_target):
        assert float(jnp.max(jnp.abs(g))) == 0.0, jax.tree_util.keystr(path)
    # ... nor the later observations, which only the targets read.
    assert float(jnp.max(jnp.abs(g_obs[:, 1:]))) == 0.0
    assert float(jnp.max(jnp.abs(g_obs[:, 0]))) > 0.0
    # The consistency loss does train the prediction branch: projection and predictor.
    for name in ("projection", "predictor", "repr_net", "dyn_net"):
        assert max(float(jnp.max(jnp.abs(g))) for g in jax.tree_util.tree_leaves(g_params["params"][name])) > 0.0, name


def test_updates_on_a_fixed_batch_lower_the_loss():
    cfg, state, _, batch, loss_and_grads = setup()
    optimizer = learner_lib.make_optimizer(cfg.learner)
    apply = jax.jit(lambda g, opt_state, params: optimizer.update(g, opt_state, params))
    params, opt_state = state.params, state.opt_state
    losses = []
    for _ in range(6):
        loss, priorities, (g_params, g_target, _) = loss_and_grads(params, params, batch.obs, batch)
        grads = jax.tree_util.tree_map(jnp.add, g_params, g_target)  # the true gradient of loss_fn
        updates, opt_state = apply(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
        losses.append(float(loss))
    assert np.all(np.isfinite(losses))
    assert np.all(np.diff(losses) < 0), losses
    assert losses[-1] < 0.97 * losses[0], losses
    assert priorities.shape == (cfg.replay.batch_size,) and np.all(np.asarray(priorities) >= 0)


# ---------------------------------------------------------------------------------------
# The jitted programs compile once


def test_train_program_compiles_once_and_trains():
    cfg = tiny_config(reanalyze_fraction=0.5)  # the real program: reanalysis included
    train = learner_of(cfg).train
    traces = {"n": 0}

    def counted(state, replay):
        traces["n"] += 1
        return train(state, replay)

    jitted = jax.jit(counted, donate_argnums=(0, 1))
    state = jax.tree_util.tree_map(jnp.copy, setup()[1])  # fresh buffers: they are donated
    replay = filled_replay(cfg, seed=1)
    t0 = int(replay.t)
    priorities0 = np.asarray(replay.priority).copy()
    for call in range(3):
        state, replay, metrics = jitted(state, replay)
        assert int(state.step) == (call + 1) * cfg.learner.updates_per_call
        for key, value in metrics.items():
            assert np.isfinite(float(value)), key
    assert traces["n"] == 1
    assert jitted._cache_size() == 1
    assert int(replay.t) == t0
    assert not np.array_equal(np.asarray(replay.priority), priorities0)  # priorities were refreshed
    params0 = setup()[1].params
    assert any(not np.array_equal(a, b) for a, b in zip(jax.tree_util.tree_leaves(state.params),
                                                        jax.tree_util.tree_leaves(params0)))
    # target_update_interval = 2 divides the step count: the target params were just refreshed.
    assert int(state.step) % cfg.learner.target_update_interval == 0
    for a, b in zip(jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(state.target_params)):
        np.testing.assert_array_equal(a, b)


def test_act_program_compiles_once():
    cfg = tiny_config()
    agent = make_agent(cfg.replace(env=dataclasses.replace(cfg.env, num_envs=NUM_ENVS)),
                       EnvSpec(NUM_ACTIONS, (OBS_DIM,)), model=MODEL)
    state = agent.init(jax.random.PRNGKey(0))
    traces = {"n": 0}

    def counted(state, rng, obs, temperature):
        traces["n"] += 1
        return agent.act(state, rng, obs, temperature)

    jitted = jax.jit(counted)
    for i in range(3):
        obs = jax.random.normal(jax.random.PRNGKey(10 + i), (NUM_ENVS, OBS_DIM))
        out = jitted(state, jax.random.PRNGKey(i), obs, jnp.float32(1.0 / (i + 1)))
        assert out.action.shape == (NUM_ENVS,)
        assert np.all((np.asarray(out.action) >= 0) & (np.asarray(out.action) < NUM_ACTIONS))
        np.testing.assert_allclose(np.sum(np.asarray(out.policy), -1), 1.0, atol=1e-5)
        assert np.all(np.isfinite(np.asarray(out.root_value)))
    assert traces["n"] == 1
    assert jitted._cache_size() == 1
