"""Scalar transforms and categorical supports.

Values and rewards are predicted as categorical distributions over a fixed
support in a squashed space: ``h(x) = sign(x) (sqrt(|x| + 1) - 1) + eps x``
(Pohlen et al. 2018, used by MuZero and EfficientZero with eps = 0.001).
A scalar is encoded as a "two-hot" vector on the two nearest support points.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

EPS = 1e-3


def h(x: jnp.ndarray, eps: float = EPS) -> jnp.ndarray:
    """The invertible value transform h(x)."""
    return jnp.sign(x) * (jnp.sqrt(jnp.abs(x) + 1.0) - 1.0) + eps * x


def h_inv(y: jnp.ndarray, eps: float = EPS) -> jnp.ndarray:
    """Exact inverse of :func:`h` (closed form of the quadratic in sqrt(|x|+1)).

    ``sqrt(|x| + 1) = (sqrt(1 + 4 eps (|y| + 1 + eps)) - 1) / (2 eps)``, written as
    ``2 (|y| + 1 + eps) / (1 + sqrt(...))`` to avoid the cancellation in
    ``sqrt(...) - 1``, which costs about 1e-4 absolute error in float32 (h_inv(h(1))
    would be 0.9999).
    """
    a = jnp.abs(y)
    root = 2.0 * (a + 1.0 + eps) / (1.0 + jnp.sqrt(1.0 + 4.0 * eps * (a + 1.0 + eps)))
    return jnp.sign(y) * (jnp.square(root) - 1.0)


@dataclasses.dataclass(frozen=True)
class Support:
    """A uniform categorical support ``[low, high]`` with ``num_bins`` points, in h-space.

    EfficientZero uses 601 bins over [-300, 300] (step 1) for value and value prefix;
    EfficientZero V2 uses 51 bins over the same range.
    """

    low: float
    high: float
    num_bins: int
    transform: bool = True  # apply h / h_inv around the support

    def __post_init__(self):
        if self.num_bins < 2:
            raise ValueError(f"Support needs num_bins >= 2, got {self.num_bins}")
        if not self.high > self.low:
            raise ValueError(f"Support needs high > low, got low={self.low}, high={self.high}")

    @property
    def atoms(self) -> jnp.ndarray:
        return jnp.linspace(self.low, self.high, self.num_bins)

    @property
    def step(self) -> float:
        return (self.high - self.low) / (self.num_bins - 1)

    def encode(self, x: jnp.ndarray) -> jnp.ndarray:
        """Scalars ``[...]`` -> two-hot probabilities ``[..., num_bins]``."""
        y = h(x) if self.transform else x
        y = jnp.clip(y, self.low, self.high)
        pos = (y - self.low) / self.step
        lower = jnp.clip(jnp.floor(pos), 0, self.num_bins - 1)
        upper_weight = pos - lower
        lower_i = lower.astype(jnp.int32)
        upper_i = jnp.minimum(lower_i + 1, self.num_bins - 1)
        idx = jnp.arange(self.num_bins)
        probs = (idx == lower_i[..., None]) * (1.0 - upper_weight[..., None])
        probs = probs + (idx == upper_i[..., None]) * upper_weight[..., None]
        return probs

    def decode_probs(self, probs: jnp.ndarray) -> jnp.ndarray:
        """Probabilities ``[..., num_bins]`` -> scalars ``[...]`` (expectation, then h_inv)."""
        y = jnp.sum(probs * self.atoms, axis=-1)
        return h_inv(y) if self.transform else y

    def decode_logits(self, logits: jnp.ndarray) -> jnp.ndarray:
        """Logits ``[..., num_bins]`` -> scalars ``[...]``."""
        return self.decode_probs(jax.nn.softmax(logits.astype(jnp.float32), axis=-1))
