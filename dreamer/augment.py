"""Image augmentation for the learner: random shift and intensity (EfficientZero / DrQ style).

:func:`augment_branches` draws the online branch (the observation the unroll starts from)
and the target branch (the later observations the consistency loss compares with)
independently, as EfficientZero does; within a branch one shift and one intensity factor
per sample are shared by its positions.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def random_shift(rng: jnp.ndarray, images: jnp.ndarray, pad: int = 4) -> jnp.ndarray:
    """``[B, T, H, W, C]`` -> same shape, each sample shifted by up to ``pad`` pixels (edge padding)."""
    b, _, h, w, _ = images.shape
    padded = jnp.pad(images, ((0, 0), (0, 0), (pad, pad), (pad, pad), (0, 0)), mode="edge")
    offsets = jax.random.randint(rng, (b, 2), 0, 2 * pad + 1)

    def crop(img, off):
        return jax.lax.dynamic_slice(img, (0, off[0], off[1], 0), (img.shape[0], h, w, img.shape[-1]))

    return jax.vmap(crop)(padded, offsets)


def random_intensity(rng: jnp.ndarray, images: jnp.ndarray, scale: float = 0.05) -> jnp.ndarray:
    """Multiplies each sample by ``1 + scale * clip(N(0, 1), -2, 2)``; returns float32 in [0, 1]."""
    x = images.astype(jnp.float32) / 255.0 if images.dtype == jnp.uint8 else images.astype(jnp.float32)
    noise = jnp.clip(jax.random.normal(rng, (images.shape[0],) + (1,) * (images.ndim - 1)), -2.0, 2.0)
    return jnp.clip(x * (1.0 + scale * noise), 0.0, 1.0)


def augment(rng: jnp.ndarray, images: jnp.ndarray) -> jnp.ndarray:
    """Random shift then intensity, for ``[B, T, H, W, C]`` image batches."""
    k1, k2 = jax.random.split(rng)
    return random_intensity(k2, random_shift(k1, images))


def augment_branches(rng: jnp.ndarray, obs: jnp.ndarray) -> jnp.ndarray:
    """``[B, K+1, H, W, C]``: position 0 and positions 1..K augmented with independent draws."""
    k_online, k_target = jax.random.split(rng)
    return jnp.concatenate([augment(k_online, obs[:, :1]), augment(k_target, obs[:, 1:])], axis=1)
