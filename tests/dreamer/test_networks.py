"""The MLP family's optional convolutional encoder for small image observations."""

import dataclasses

import jax
import jax.numpy as jnp
import pytest

from dreamer.config import NetworkConfig
from dreamer.networks import EfficientZeroModel


def _leaves(tree):
    return {"/".join(str(k.key) for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(tree)}


def test_encoder_channels_add_convolutions_only_when_asked():
    plain = EfficientZeroModel(NetworkConfig(), (10, 10, 4), 3)
    conv = EfficientZeroModel(dataclasses.replace(NetworkConfig(), encoder_channels=(8,)), (10, 10, 4), 3)
    plain_params, conv_params = plain.init(jax.random.PRNGKey(0)), conv.init(jax.random.PRNGKey(0))
    assert not any("encoder" in name for name in _leaves(plain_params))
    kernels = [name for name in _leaves(conv_params) if "encoder" in name and name.endswith("kernel")]
    assert len(kernels) == 1
    obs = jax.random.bernoulli(jax.random.PRNGKey(1), 0.3, (2, 10, 10, 4)).astype(jnp.float32)
    state = conv.represent(conv_params, obs)
    assert state.latent.shape == (2, NetworkConfig().latent_dim)
    assert bool(jnp.all(jnp.isfinite(state.latent)))


def test_encoder_channels_refuse_vector_observations():
    with pytest.raises(ValueError, match="encoder_channels needs image observations"):
        EfficientZeroModel(dataclasses.replace(NetworkConfig(), encoder_channels=(8,)), (4,), 2)


@pytest.mark.parametrize("kind", ["mlp", pytest.param("conv", marks=pytest.mark.slow)])  # the conv: 15 s more
def test_reward_grad_scale_scales_the_reward_path_into_the_dynamics_only(kind):
    """EfficientZero halves the gradient into each unrolled latent on every path: with
    reward_grad_scale 0.5 the reward head's gradient reaches the dynamics (and everything
    before it) halved, the reward head's own gradient and the forward pass unchanged."""
    base = NetworkConfig(kind=kind, latent_dim=8, hidden=(16,), head_hidden=(8,), channels=8, reduced_channels=2,
                         downsample=False, lstm_hidden=8, projection_hidden=8, projection_out=8, predictor_hidden=8)
    shape = (10,) if kind == "mlp" else (5, 5, 2)
    models = {s: EfficientZeroModel(dataclasses.replace(base, reward_grad_scale=s), shape, 3) for s in (1.0, 0.5)}
    params = models[1.0].init(jax.random.PRNGKey(0))
    # non-zero reward-head output layers, so its gradient reaches the latent
    params = jax.tree_util.tree_map_with_path(
        lambda p, x: x + 0.1 if "reward_head" in jax.tree_util.keystr(p) else x, params)
    obs = jax.random.normal(jax.random.PRNGKey(1), (4, *shape))

    def reward_loss(model):
        def f(p):
            state, r_logits = model.dynamics(p, model.represent(p, obs), jnp.array([0, 1, 2, 1]))
            return jnp.sum(jnp.sin(r_logits)), r_logits
        return f

    (full, r_full), g_full = jax.value_and_grad(reward_loss(models[1.0]), has_aux=True)(params)
    (half, r_half), g_half = jax.value_and_grad(reward_loss(models[0.5]), has_aux=True)(params)
    assert jnp.allclose(r_full, r_half) and jnp.allclose(full, half)
    for path, a in jax.tree_util.tree_leaves_with_path(g_full):
        name = jax.tree_util.keystr(path)
        b = dict((jax.tree_util.keystr(q), y) for q, y in jax.tree_util.tree_leaves_with_path(g_half))[name]
        after_latent = any(part in name for part in ("reward_head", "lstm", "reward_reduce"))
        want = a if after_latent else 0.5 * a
        assert jnp.allclose(b, want, rtol=1e-5, atol=1e-7), name
    assert any(float(jnp.max(jnp.abs(a))) > 0 for path, a in jax.tree_util.tree_leaves_with_path(g_full)
               if "repr" in jax.tree_util.keystr(path))
