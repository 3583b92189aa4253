"""Device-resident prioritised replay of per-env streams, as pure functions over a pytree.

Every training env writes one step per vector step into its own ring of length
``L = capacity // num_envs``; all envs write in lockstep, so one column ``t % L`` is
written per call. Frames are stored once and stacked at sample time. A step stores

* ``frame[t]``: the observation the agent acted on (a single frame for images),
* ``action[t]``, ``reward[t]`` and the end flags of the transition it caused:
  ``terminal[t]`` (the episode ended in a terminal state) and ``truncated[t]`` (it was
  cut by a time limit; the future is unknown but not zero),
* ``first[t]``: ``frame[t]`` is the first of its episode (frame stacking stops there),
* the policy and value targets: the acting search's policy and root value when written,
  replaced by each reanalysis sweep (:mod:`dreamer.reanalyze`), with the sweep's number in
  ``version`` (-1: still the acting search's),
* and a priority.

Positions are addressed by ``(env, absolute step)``; the ring keeps absolute steps in
``[max(0, t - L), t - 1]``. New data enters at the buffer's current maximum priority (1 in
an empty buffer), as in EfficientZero, or at the running maximum (see :func:`add`).

Shapes: ``N`` envs, ``L`` ring length, ``A`` actions, ``B`` batch, ``W`` window.

Why our own and not a library buffer (flashbax): the learner needs, inside one jitted
update, frames stored once and stacked at sample time across episode starts, windows of
K + td steps with per-step end flags, sampling proportional to per-position priorities
with stratified draws, and per-position targets that a reanalysis sweep rewrites in place
with a version stamp. Library buffers store whole transitions or fixed trajectories with
uniform or per-item priorities; composing these on top would store frames K + 4 times
(96x96x3 Atari frames: several GB at 100k positions) or gather twice.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp


class ReplayState(NamedTuple):
    frame: jnp.ndarray  # [N, L, *frame_shape]
    action: jnp.ndarray  # [N, L] int32
    reward: jnp.ndarray  # [N, L] float32
    terminal: jnp.ndarray  # [N, L] bool
    truncated: jnp.ndarray  # [N, L] bool
    first: jnp.ndarray  # [N, L] bool
    policy: jnp.ndarray  # [N, L, A] float32 policy target (acting search, then each sweep's)
    value: jnp.ndarray  # [N, L] float32 bootstrap value (acting search root value, then the sweep's)
    version: jnp.ndarray  # [N, L] int32 the sweep that wrote policy and value (-1: acting)
    projection: jnp.ndarray  # [N, L, P] float32 a sweep's consistency target for the position (P = 0: none kept)
    priority: jnp.ndarray  # [N, L] float32 (0 where nothing is stored)
    t: jnp.ndarray  # [] int32, steps written per env (absolute)
    max_priority: jnp.ndarray  # [] float32, the largest priority ever set (1 at the start)


class Window(NamedTuple):
    """A sampled batch: ``B`` start positions and the ``W`` steps that follow each."""

    env: jnp.ndarray  # [B] int32
    start: jnp.ndarray  # [B] int32 absolute step of position 0
    weight: jnp.ndarray  # [B] float32 importance weights (max-normalised)
    action: jnp.ndarray  # [B, W]
    reward: jnp.ndarray  # [B, W]
    terminal: jnp.ndarray  # [B, W]
    truncated: jnp.ndarray  # [B, W]
    valid: jnp.ndarray  # [B, W] the step has been written (not past the write head)
    policy: jnp.ndarray  # [B, W, A]
    age: jnp.ndarray  # [B] int32 transitions written since position 0 (all envs)


def init(num_envs: int, capacity: int, frame_shape: tuple[int, ...], frame_dtype, num_actions: int,
         projection_dim: int = 0) -> ReplayState:
    """An empty buffer holding ``capacity`` transitions over ``num_envs`` streams
    (``projection_dim``: the size of the stored consistency targets, 0 for none)."""
    length = capacity // num_envs
    if length < 2:
        raise ValueError(f"replay capacity {capacity} is too small for {num_envs} envs")
    n = num_envs
    return ReplayState(
        frame=jnp.zeros((n, length, *frame_shape), frame_dtype),
        action=jnp.zeros((n, length), jnp.int32),
        reward=jnp.zeros((n, length), jnp.float32),
        terminal=jnp.zeros((n, length), bool),
        truncated=jnp.zeros((n, length), bool),
        first=jnp.zeros((n, length), bool),
        policy=jnp.zeros((n, length, num_actions), jnp.float32),
        value=jnp.zeros((n, length), jnp.float32),
        version=jnp.full((n, length), -1, jnp.int32),
        projection=jnp.zeros((n, length, projection_dim), jnp.float32),
        priority=jnp.zeros((n, length), jnp.float32),
        t=jnp.zeros((), jnp.int32),
        max_priority=jnp.ones((), jnp.float32),
    )


def ring_length(state: ReplayState) -> int:
    return state.action.shape[1]


def size(state: ReplayState) -> jnp.ndarray:
    """Transitions stored, over all envs."""
    return jnp.minimum(state.t, ring_length(state)) * state.action.shape[0]


def add(state: ReplayState, frame, action, reward, terminal, truncated, first, policy, value,
        new_priority: str = "max") -> ReplayState:
    """Writes one vector step (leading axis ``N`` on every argument).

    ``new_priority``: ``"max"`` gives it the buffer's current maximum priority (1 in an empty
    buffer; EfficientZero), ``"running_max"`` the largest priority ever set, which never
    comes down, so fresh data keeps the top priority.
    """
    col = state.t % ring_length(state)
    if new_priority == "running_max":
        top = state.max_priority
    else:
        top = jnp.max(state.priority)
        top = jnp.where(top > 0, top, 1.0)

    def put(buf, x):
        x = jnp.asarray(x, buf.dtype)
        want = buf.shape[:1] + buf.shape[2:]
        if x.shape != want:
            raise ValueError(f"replay.add: expected an array of shape {list(want)}, got {list(x.shape)}")
        return jax.lax.dynamic_update_index_in_dim(buf, x, col, axis=1)

    n = state.action.shape[0]
    return state._replace(
        frame=put(state.frame, frame),
        action=put(state.action, action),
        reward=put(state.reward, reward),
        terminal=put(state.terminal, terminal),
        truncated=put(state.truncated, truncated),
        first=put(state.first, first),
        policy=put(state.policy, policy),
        value=put(state.value, value),
        version=put(state.version, jnp.full((n,), -1)),
        priority=put(state.priority, jnp.full((n,), top)),
        t=state.t + 1,
    )


def _gather(buf: jnp.ndarray, env: jnp.ndarray, absolute: jnp.ndarray) -> jnp.ndarray:
    """``buf[env, absolute % L]`` with ``env`` broadcast against ``absolute``."""
    length = buf.shape[1]
    return buf[env.reshape(env.shape + (1,) * (absolute.ndim - env.ndim)), absolute % length]


def sample(
    state: ReplayState,
    rng: jnp.ndarray,
    batch_size: int,
    window: int,
    *,
    alpha: float,
    beta: float | jnp.ndarray,
) -> Window:
    """Samples ``batch_size`` start positions by priority and the ``window`` steps after each.

    ``P(i) = p_i^alpha / sum_j p_j^alpha``; importance weights ``(n P(i))^-beta``
    normalised by their maximum in the batch.
    """
    n, length = state.action.shape
    probs = jnp.where(state.priority > 0, state.priority, 0.0) ** alpha
    flat = probs.reshape(-1)
    cdf = jnp.cumsum(flat)
    total = cdf[-1]
    # Stratified draws in (0, total]; side="left" picks the first index whose cdf reaches u.
    u = (jax.random.uniform(rng, (batch_size,)) + jnp.arange(batch_size)) / batch_size * total
    u = jnp.clip(u, total * 1e-7, total)
    idx = jnp.clip(jnp.searchsorted(cdf, u, side="left"), 0, n * length - 1)
    # XLA computes cumsum as a parallel prefix sum, so in float32 the cdf can rise by a
    # rounding error across a zero-priority (unwritten) slot, and a draw can land there.
    # Such a draw is moved to the nearest written slot before it (or the first one).
    positions = jnp.arange(n * length)
    last_written = jax.lax.cummax(jnp.where(flat > 0, positions, -1))
    first_written = jnp.argmax(flat > 0)
    idx = jnp.where(flat[idx] > 0, idx, last_written[idx])
    idx = jnp.where(idx < 0, first_written, idx)
    env, col = idx // length, idx % length
    start = latest_step(state, col)
    p = flat[idx] / total
    count = size(state).astype(jnp.float32)
    weight = (count * p) ** (-beta)
    weight = weight / jnp.max(weight)
    return window_at(state, env, start, window, weight)


def latest_step(state: ReplayState, col: jnp.ndarray) -> jnp.ndarray:
    """The absolute step stored in ring column ``col``: the latest one written there."""
    length = ring_length(state)
    return col + ((state.t - 1 - col) // length) * length


def window_at(state: ReplayState, env: jnp.ndarray, start: jnp.ndarray, window: int,
              weight: jnp.ndarray | None = None) -> Window:
    """The ``window`` steps from absolute step ``start`` of stream ``env`` (``[B]`` each)."""
    n = state.action.shape[0]
    t = state.t
    absolute = start[:, None] + jnp.arange(window)[None, :]
    valid = absolute <= t - 1
    g = lambda buf: _gather(buf, env, absolute)  # noqa: E731
    return Window(
        env=env.astype(jnp.int32),
        start=start.astype(jnp.int32),
        weight=jnp.ones(env.shape, jnp.float32) if weight is None else weight.astype(jnp.float32),
        action=g(state.action),
        reward=jnp.where(valid, g(state.reward), 0.0),
        terminal=valid & g(state.terminal),
        truncated=valid & g(state.truncated),
        valid=valid,
        policy=g(state.policy),
        age=((t - 1 - start) * n).astype(jnp.int32),
    )


def stacked_frames(state: ReplayState, env: jnp.ndarray, absolute: jnp.ndarray, stack: int) -> jnp.ndarray:
    """Frame stacks ending at ``absolute`` (any shape ``[...]``) -> ``[..., *frame[:-1], C * stack]``.

    Frames before the episode's first frame (or before the oldest stored step) repeat
    that first frame. With ``stack == 1`` this is a plain gather.
    """
    newest = _gather(state.frame, env, absolute)
    if stack == 1:
        return newest
    length = ring_length(state)
    oldest = jnp.maximum(state.t - length, 0)
    frames = [newest]
    src = absolute
    stop = _gather(state.first, env, absolute) | (absolute <= oldest)
    for _ in range(stack - 1):
        src = jnp.where(stop, src, src - 1)
        frames.append(_gather(state.frame, env, src))
        stop = stop | _gather(state.first, env, src) | (src <= oldest)
    frames = frames[::-1]  # oldest first
    return jnp.concatenate(frames, axis=-1)


def update_priorities(state: ReplayState, env: jnp.ndarray, start: jnp.ndarray, priority: jnp.ndarray, eps: float = 1e-6) -> ReplayState:
    """Sets new priorities at sampled positions (``[B]`` each)."""
    col = start % ring_length(state)
    new = jnp.maximum(priority.astype(jnp.float32), eps)
    return state._replace(priority=state.priority.at[env, col].set(new),
                          max_priority=jnp.maximum(state.max_priority, jnp.max(new)))
