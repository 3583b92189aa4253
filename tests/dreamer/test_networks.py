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
