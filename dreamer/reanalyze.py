"""Reanalysis sweeps: the whole replay re-planned with the target params once per target period.

EfficientZero re-plans the positions of every sampled batch (about ``1,536`` roots per
update at Atari settings) with the target params, which change only once per target
period. Re-planning each stored position once per period instead gives the same targets
for far fewer searches (about 35M instead of 181M root searches for an Atari-100k game)
and runs them in large batches, which is what an accelerator needs.

A sweep, for every stored position, in chunks of ``chunk`` roots:

1. searches from it with the target params (the planner settings of acting), and stores
   the search policy as its policy target and the target network's value as its
   bootstrap value, stamped with the sweep's number (``ReplayState.version``), and, when
   the replay keeps them, the projection of the root's latent as the consistency target
   of the unroll steps that reach the position (a target network for the temporal
   consistency loss, as BYOL uses one, instead of K extra forward passes per sample);
2. then, with every value refreshed, computes its n-step value target and sets its
   priority to ``|value - target|`` (the target network's TD error).

Positions written after a sweep keep the acting search's policy and root value until the
next one. Between sweeps a batch needs no network at all: bootstrap values and policy
targets are gathers (``Learner.make_batch`` with ``reanalyze="sweep"``).

Shapes: ``N`` env streams, ``L`` ring length, ``A`` actions.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from dreamer import replay as replay_lib
from dreamer.agent import in_lockstep
from dreamer import targets as targets_lib
from dreamer.config import PlannerConfig
from dreamer.planner import plan
from dreamer.sharding import along_data
from dreamer.world_model import WorldModel


def chunk_columns(replay: replay_lib.ReplayState, chunk: int) -> int:
    """Ring columns per chunk: ``chunk`` roots over the ``N`` streams (at least 1, at most L)."""
    n, length = replay.action.shape
    return max(1, min(length, chunk // n))


def _chunks(replay: replay_lib.ReplayState, cols: int) -> jnp.ndarray:
    """How many chunks of ``cols`` columns cover the written columns."""
    written = jnp.minimum(replay.t, replay_lib.ring_length(replay))
    return (written + cols - 1) // cols


def _chunk_positions(replay: replay_lib.ReplayState, i: jnp.ndarray, cols: int):
    """Chunk ``i``: its first column and the ``(env, absolute step)`` of its ``N * cols`` roots.
    The last chunk is moved back to end at the ring's end, so it may repeat a few columns."""
    n, length = replay.action.shape
    c0 = jnp.minimum(i * cols, length - cols)
    col = c0 + jnp.arange(cols)
    env = jnp.repeat(jnp.arange(n), cols)
    absolute = jnp.tile(replay_lib.latest_step(replay, col), n)
    return c0, env, absolute


def _put_columns(buf: jnp.ndarray, values: jnp.ndarray, c0: jnp.ndarray, n: int, cols: int) -> jnp.ndarray:
    """Writes ``values`` (``[N * cols, ...]``, env-major) into columns ``c0 .. c0 + cols`` of ``buf``."""
    block = values.reshape((n, cols) + values.shape[1:]).astype(buf.dtype)
    return jax.lax.dynamic_update_slice_in_dim(buf, block, c0, axis=1)


def sweep(
    params: Any,
    replay: replay_lib.ReplayState,
    rng: jnp.ndarray,
    version: jnp.ndarray,
    *,
    model: WorldModel,
    planner: PlannerConfig,
    frame_stack: int,
    td_steps: int,
    td_age_step: int,
    priority_eps: float,
    chunk: int,
    fraction: float = 1.0,
) -> tuple[replay_lib.ReplayState, dict]:
    """Re-plans every stored position with ``params`` (or, with ``fraction < 1``, that share
    of the chunks, taking them in turn from one sweep to the next: sweep ``v`` re-plans the
    ``m = ceil(fraction * chunks)`` chunks from ``v * m`` on, wrapping, so every position is
    re-planned once every ``1 / fraction`` sweeps at a ``fraction`` of the cost); returns the
    replay with new policy targets, bootstrap values, version stamps and priorities of the
    chunks it re-planned, and sweep statistics."""
    n = replay.action.shape[0]
    cols = chunk_columns(replay, chunk)
    count = in_lockstep(_chunks(replay, cols))  # a loop bound, also when runs are vmapped side by side
    todo = count if fraction >= 1.0 else jnp.minimum(count, jnp.ceil(count * fraction).astype(count.dtype))
    offset = (jnp.asarray(version, count.dtype) * todo) % jnp.maximum(count, 1)

    def chunk_index(i):
        return (offset + i) % jnp.maximum(count, 1) if fraction < 1.0 else i

    def search(i, carry):
        buf, key, stats = carry
        key, sub = jax.random.split(key)
        c0, env, absolute = _chunk_positions(buf, chunk_index(i), cols)
        obs = along_data(replay_lib.stacked_frames(buf, env, absolute, frame_stack))  # roots along a data mesh
        out = plan(params, sub, obs, model=model, config=planner)
        buf = buf._replace(
            policy=_put_columns(buf.policy, out.action_weights, c0, n, cols),
            value=_put_columns(buf.value, out.predicted_value, c0, n, cols),
            version=_put_columns(buf.version, jnp.full(env.shape, version, jnp.int32), c0, n, cols),
        )
        if buf.projection.shape[-1]:  # the consistency target: the root latent's projection
            proj = model.project(params, out.root_state, with_predictor=False)
            buf = buf._replace(projection=_put_columns(buf.projection, proj, c0, n, cols))
        stats = stats + jnp.stack([jnp.sum(out.root_value), jnp.sum(out.predicted_value), env.size])
        return buf, key, stats

    replay, _, stats = jax.lax.fori_loop(0, todo, search, (replay, rng, jnp.zeros(3, jnp.float32)))

    def prioritise(i, buf):
        c0, env, absolute = _chunk_positions(buf, chunk_index(i), cols)
        window = replay_lib.window_at(buf, env, absolute, td_steps + 1)
        tp = targets_lib.plan_targets(window, unroll_steps=0, td_steps=td_steps, td_age_step=td_age_step,
                                      discount=planner.discount, prefix_horizon=1)
        boot = replay_lib._gather(buf.value, env, absolute + tp.bootstrap_index[:, 0])
        target = targets_lib.value_targets(tp, boot[:, None])[:, 0]
        value = replay_lib._gather(buf.value, env, absolute)
        priority = jnp.maximum(jnp.abs(value - target), priority_eps)
        old = jax.lax.dynamic_slice_in_dim(buf.priority, c0, cols, axis=1).reshape(-1)
        priority = jnp.where(old > 0, priority, 0.0)  # unwritten slots stay undrawable
        return buf._replace(priority=_put_columns(buf.priority, priority, c0, n, cols))

    replay = jax.lax.fori_loop(0, todo, prioritise, replay)
    total = jnp.maximum(stats[2], 1.0)
    metrics = {"reanalyze/root_value": stats[0] / total, "reanalyze/predicted_value": stats[1] / total,
               "reanalyze/roots": stats[2]}
    return replay, metrics
