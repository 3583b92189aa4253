"""EfficientZero's training loss over a ``K``-step unroll of the learned model.

* value and value-prefix (or reward): cross-entropy against two-hot targets on the
  categorical supports;
* policy: cross-entropy against the search policy;
* temporal consistency (SimSiam): negative cosine similarity between the predicted
  projection of the unrolled latent and the projection of the real next observation's
  latent, whose branch is under ``stop_gradient``;
* the gradient entering each unroll step is scaled by 1/2 (MuZero / EfficientZero).

Per-sample losses are summed over unroll steps, weighted by the replay's importance
weights and averaged over the batch; the total is divided by ``K`` before the gradient
(``scale_loss_by_unroll``, EfficientZero), while the logged ``loss/*`` stay unscaled. Shapes: ``B`` batch, ``K`` unroll, ``A`` actions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from dreamer.config import LearnerConfig
from dreamer.world_model import TrainableWorldModel, clear_memory, scale_gradient, starts_prefix_segment


class TrainBatch(NamedTuple):
    obs: jnp.ndarray  # [B, K+1, *obs_shape] observations at unroll positions
    action: jnp.ndarray  # [B, K]
    value: jnp.ndarray  # [B, K+1] value targets
    value_mask: jnp.ndarray  # [B, K+1]
    reward: jnp.ndarray  # [B, K] value-prefix (or per-step reward) targets
    reward_mask: jnp.ndarray  # [B, K]
    policy: jnp.ndarray  # [B, K+1, A] search-policy targets
    policy_mask: jnp.ndarray  # [B, K+1] (also masks the consistency loss at k >= 1)
    weight: jnp.ndarray  # [B] importance weights
    # [B, K, P] stored consistency targets (projections of the real next observations), and
    # [B, K] where they exist; None: computed here from ``obs[:, 1:]`` with the online params
    consistency_target: jnp.ndarray | None = None
    consistency_mask: jnp.ndarray | None = None


def cross_entropy(logits: jnp.ndarray, target_probs: jnp.ndarray) -> jnp.ndarray:
    """``-sum p log softmax(logits)`` over the last axis."""
    return -jnp.sum(target_probs * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def negative_cosine(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``-cos(a, b)`` over the last axis, in [-1, 1]."""
    # sqrt(sum + eps), not jnp.linalg.norm: the latter's gradient at a zero vector is NaN.
    a = a * jax.lax.rsqrt(jnp.sum(a * a, axis=-1, keepdims=True) + 1e-12)
    b = b * jax.lax.rsqrt(jnp.sum(b * b, axis=-1, keepdims=True) + 1e-12)
    return -jnp.sum(a * b, axis=-1)


def loss_fn(params, model: TrainableWorldModel, batch: TrainBatch, cfg: LearnerConfig):
    """Returns ``(loss, (metrics, priorities [B]))``.

    ``model`` is any :class:`~dreamer.world_model.TrainableWorldModel`; only its declared
    functions and supports are used.
    """
    bsz, k_max = batch.action.shape
    state = model.represent(params, batch.obs[:, 0])
    v_logits, p_logits = model.predict(params, state)
    value_pred0 = model.value_support.decode_logits(v_logits)

    value_t = model.value_support.encode(batch.value)  # [B, K+1, bins]
    reward_t = model.reward_support.encode(batch.reward)  # [B, K, bins]
    value_loss = cross_entropy(v_logits, value_t[:, 0]) * batch.value_mask[:, 0]
    policy_loss = cross_entropy(p_logits, batch.policy[:, 0]) * batch.policy_mask[:, 0]

    # Targets for the consistency loss: projections of the real observations' latents, no
    # gradient; stored ones (a sweep's, with the target params) when the batch brings them.
    if batch.consistency_target is None:
        later = batch.obs[:, 1:].reshape((bsz * k_max, *batch.obs.shape[2:]))
        target_state = jax.lax.stop_gradient(model.represent(params, later))
        target_proj = jax.lax.stop_gradient(model.project(params, target_state, with_predictor=False))
        target_proj, cmask = target_proj.reshape(bsz, k_max, -1), batch.policy_mask[:, 1:]
    else:
        target_proj = jax.lax.stop_gradient(batch.consistency_target)
        cmask = batch.policy_mask[:, 1:] * batch.consistency_mask

    def step(state, xs):
        k, action, value_k, policy_k, reward_k, vmask, pmask, rmask, cmask, tproj = xs
        if model.value_prefix:
            reset = starts_prefix_segment(k, model.value_prefix_horizon)
            state = jax.tree_util.tree_map(lambda new, old: jnp.where(reset, new, old), clear_memory(state), state)
        state, r_logits = model.dynamics(params, state, action)
        state = state._replace(latent=scale_gradient(state.latent, 0.5))
        v_logits, p_logits = model.predict(params, state)
        pred_proj = model.project(params, state, with_predictor=True)
        losses = (
            cross_entropy(v_logits, value_k) * vmask,
            cross_entropy(p_logits, policy_k) * pmask,
            cross_entropy(r_logits, reward_k) * rmask,
            negative_cosine(pred_proj, tproj) * cmask,
        )
        return state, losses

    time_major = lambda x: jnp.swapaxes(x, 0, 1)  # noqa: E731
    xs = (
        jnp.arange(1, k_max + 1),
        time_major(batch.action),
        time_major(value_t[:, 1:]),
        time_major(batch.policy[:, 1:]),
        time_major(reward_t),
        time_major(batch.value_mask[:, 1:]),
        time_major(batch.policy_mask[:, 1:]),
        time_major(batch.reward_mask),
        time_major(cmask),
        time_major(target_proj),
    )
    _, (v_l, p_l, r_l, c_l) = jax.lax.scan(step, state, xs)
    value_loss = value_loss + jnp.sum(v_l, 0)
    policy_loss = policy_loss + jnp.sum(p_l, 0)
    reward_loss = jnp.sum(r_l, 0)
    consistency_loss = jnp.sum(c_l, 0)

    per_sample = (
        cfg.value_loss_weight * value_loss
        + cfg.reward_loss_weight * reward_loss
        + cfg.policy_loss_weight * policy_loss
        + cfg.consistency_loss_weight * consistency_loss
    )
    loss = jnp.mean(per_sample * batch.weight)
    # EfficientZero scales the gradient by 1/K before clipping its norm; the metrics keep the
    # unscaled total.
    scaled = loss / k_max if cfg.scale_loss_by_unroll else loss
    priorities = jnp.abs(value_pred0 - batch.value[:, 0])
    metrics = {
        "loss/total": loss,
        "loss/value": jnp.mean(value_loss),
        "loss/reward": jnp.mean(reward_loss),
        "loss/policy": jnp.mean(policy_loss),
        "loss/consistency": jnp.mean(consistency_loss),
        "train/value_prediction": jnp.mean(value_pred0),
        "train/value_target": jnp.mean(batch.value[:, 0]),
    }
    return scaled, (metrics, priorities)
