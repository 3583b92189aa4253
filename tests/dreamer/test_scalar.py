"""Tests of dreamer/scalar.py: the value transform h and the categorical supports."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamer.scalar import Support, h, h_inv

# Magnitudes from 1e-4 to 1e5, both signs, and zero.
XS = np.concatenate([-np.logspace(-4, 5, 301), [0.0], np.logspace(-4, 5, 301)]).astype(np.float32)

# Jitted entry points: one compile per shape instead of one per primitive (eager mode).
h_j = jax.jit(h)
h_inv_j = jax.jit(h_inv)
encode = jax.jit(lambda support, x: support.encode(x), static_argnums=0)
decode_probs = jax.jit(lambda support, p: support.decode_probs(p), static_argnums=0)
decode_logits = jax.jit(lambda support, z: support.decode_logits(z), static_argnums=0)

SUPPORTS = [
    Support(-300.0, 300.0, 601),  # EfficientZero
    Support(-300.0, 300.0, 51),  # EfficientZero V2
    Support(-20.0, 20.0, 41),  # NetworkConfig default
    Support(-5.0, 7.0, 25, transform=False),  # plain (no h) support
]


def test_h_known_values_and_shape():
    np.testing.assert_allclose(h_j(jnp.array([0.0, 3.0, -3.0, 8.0])), [0.0, 1.003, -1.003, 2.008], rtol=1e-6)
    assert h_j(jnp.zeros((2, 3))).shape == (2, 3)
    y = np.asarray(h_j(jnp.asarray(np.sort(XS))))
    assert (np.diff(y) > 0).all(), "h must be strictly increasing"


def test_h_inv_inverts_h():
    # float32: |h_inv(h(x)) - x| <= 2e-6 * max(1, |x|) (the naive closed form, with its
    # sqrt(1 + z) - 1 cancellation, was off by 1e-4 at x = 1).
    x = jnp.asarray(XS)
    err = np.abs(np.asarray(h_inv_j(h_j(x))) - XS)
    assert (err <= 2e-6 * np.maximum(1.0, np.abs(XS))).all(), f"max error {err.max()} at {XS[err.argmax()]}"
    assert float(h_inv_j(h_j(jnp.float32(1.0)))) == pytest.approx(1.0, abs=1e-6)
    assert float(h_inv_j(jnp.float32(0.0))) == 0.0
    # And the other way round, over a support's range in h-space.
    y = jnp.linspace(-300.0, 300.0, 601)
    np.testing.assert_allclose(h_j(h_inv_j(y)), y, atol=1e-4)
    # Gradients of the round trip are 1 (away from exactly 0, where sign() has none).
    nz = jnp.asarray(XS[XS != 0])
    g = jax.jit(jax.grad(lambda v: jnp.sum(h_inv(h(v)))))(nz)
    np.testing.assert_allclose(g, 1.0, rtol=1e-3)


@pytest.mark.parametrize("support", SUPPORTS, ids=lambda s: f"{s.low}:{s.high}:{s.num_bins}:{s.transform}")
def test_encode_decode_roundtrip_inside_range(support):
    inv = h_inv_j if support.transform else (lambda v: v)
    lo, hi = float(inv(jnp.float32(support.low))), float(inv(jnp.float32(support.high)))
    x = np.concatenate([np.linspace(lo, hi, 1001), XS[(XS > lo) & (XS < hi)]]).astype(np.float32)
    probs = encode(support, jnp.asarray(x))
    assert probs.shape == (len(x), support.num_bins)
    back = np.asarray(decode_probs(support, probs))
    # float32 limits: a position on a 600-wide support is resolved to ulp(300) = 3e-5 in
    # h-space, i.e. about 6e-5 absolute near 0 and 1e-5 relative elsewhere.
    np.testing.assert_allclose(back, x, atol=1e-4, rtol=1e-5)
    # decode_logits is decode_probs after a softmax.
    logits = jnp.log(jnp.maximum(probs, 1e-30))
    np.testing.assert_allclose(decode_logits(support, logits), back, atol=1e-3, rtol=1e-5)


@pytest.mark.parametrize("support", SUPPORTS, ids=lambda s: f"{s.low}:{s.high}:{s.num_bins}:{s.transform}")
def test_two_hot_is_a_distribution_on_adjacent_bins(support):
    x = jnp.asarray(np.concatenate([XS, [1e9, -1e9]]).astype(np.float32))
    probs = np.asarray(encode(support, x))
    np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
    assert (probs >= 0).all()
    nonzero = probs > 0
    assert (nonzero.sum(-1) <= 2).all()
    first = nonzero.argmax(-1)
    last = support.num_bins - 1 - nonzero[:, ::-1].argmax(-1)
    assert (last - first <= 1).all()
    # Batched inputs keep their shape.
    assert encode(support, jnp.zeros((3, 4))).shape == (3, 4, support.num_bins)


@pytest.mark.parametrize("support", SUPPORTS, ids=lambda s: f"{s.low}:{s.high}:{s.num_bins}:{s.transform}")
def test_atoms_are_one_hot_and_out_of_range_clips(support):
    atoms = np.asarray(support.atoms)
    assert atoms[0] == support.low and atoms[-1] == pytest.approx(support.high)
    assert support.step == pytest.approx(atoms[1] - atoms[0])
    inv = h_inv_j if support.transform else (lambda v: v)
    # A scalar sitting on an atom is one-hot there (up to float error of h).
    idx = np.arange(0, support.num_bins, max(1, support.num_bins // 7))
    probs = np.asarray(encode(support, inv(jnp.asarray(atoms[idx]))))
    np.testing.assert_allclose(probs[np.arange(len(idx)), idx], 1.0, atol=1e-3)
    # Beyond the range: all mass on the edge bin, decoding to the edge value.
    top, bottom = float(inv(jnp.float32(support.high))), float(inv(jnp.float32(support.low)))
    x = jnp.array([1e9, top * 10 + 10, -1e9, bottom * 10 - 10], jnp.float32)
    p = np.asarray(encode(support, x))
    np.testing.assert_allclose(p[:2, -1], 1.0)
    np.testing.assert_allclose(p[2:, 0], 1.0)
    np.testing.assert_allclose(p.sum(-1), 1.0)
    np.testing.assert_allclose(decode_probs(support, jnp.asarray(p)), [top, top, bottom, bottom], rtol=1e-5)


def test_support_validation():
    with pytest.raises(ValueError, match="num_bins >= 2, got 1"):
        Support(-1.0, 1.0, 1)
    with pytest.raises(ValueError, match="high > low, got low=1.0, high=1.0"):
        Support(1.0, 1.0, 5)
    assert Support(-300.0, 300.0, 601).step == 1.0
