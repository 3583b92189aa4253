"""Tests of the device-resident prioritised replay (dreamer/replay.py), all through ``jax.jit``.

Every stored value identifies where it came from: ``reward = 1000 * env + t`` for env
``env`` at absolute step ``t``, so a sampled window can be checked cell by cell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamer import replay as replay_lib

NUM_ACTIONS = 3

add = jax.jit(replay_lib.add, static_argnames="new_priority")
sample = jax.jit(replay_lib.sample, static_argnames=("batch_size", "window", "alpha"))
update_priorities = jax.jit(replay_lib.update_priorities)
stacked_frames = jax.jit(replay_lib.stacked_frames, static_argnames=("stack",))


def code(env, t):
    return 1000.0 * env + t


def fill(num_envs, length, steps, *, frame_shape=(1,), frame_dtype=jnp.float32, first=None, terminal=None, truncated=None):
    """A buffer with ``steps`` vector steps written; every field encodes ``(env, t)``.

    ``first`` / ``terminal`` / ``truncated``: optional ``[N, steps]`` bool arrays.
    """
    state = replay_lib.init(num_envs, num_envs * length, frame_shape, frame_dtype, NUM_ACTIONS)
    envs = np.arange(num_envs)
    flags = lambda x: np.zeros((num_envs, steps), bool) if x is None else np.asarray(x, bool)  # noqa: E731
    first, terminal, truncated = flags(first), flags(terminal), flags(truncated)
    for t in range(steps):
        frame = np.broadcast_to(frame_value(envs, t).reshape((num_envs,) + (1,) * len(frame_shape)), (num_envs, *frame_shape))
        policy = np.zeros((num_envs, NUM_ACTIONS), np.float32)
        policy[envs, (envs + t) % NUM_ACTIONS] = 1.0
        state = add(
            state,
            frame=jnp.asarray(frame, frame_dtype),
            action=jnp.asarray((envs + t) % NUM_ACTIONS, jnp.int32),
            reward=jnp.asarray(code(envs, t), jnp.float32),
            terminal=jnp.asarray(terminal[:, t]),
            truncated=jnp.asarray(truncated[:, t]),
            first=jnp.asarray(first[:, t]),
            policy=jnp.asarray(policy),
            value=jnp.asarray(-code(envs, t), jnp.float32),
        )
    return state


def frame_value(env, t):
    return 100 * np.asarray(env) + t  # fits uint8 for env <= 1, t < 56


def draw(state, seed, batch_size, window, alpha=1.0, beta=1.0):
    return jax.tree_util.tree_map(
        np.asarray, sample(state, jax.random.PRNGKey(seed), batch_size=batch_size, window=window, alpha=alpha, beta=beta)
    )


# ---------------------------------------------------------------------------------------
# Ring and window contents


def test_init_rejects_a_ring_too_short():
    with pytest.raises(ValueError, match="too small"):
        replay_lib.init(4, 7, (1,), jnp.float32, 2)


def test_ring_wraps_around_and_forgets_the_oldest_steps():
    n, length, steps = 3, 8, 21
    state = fill(n, length, steps)
    assert int(state.t) == steps
    assert int(replay_lib.size(state)) == n * length
    stored = np.asarray(state.reward)
    for env in range(n):
        for col in range(length):
            newest = max(s for s in range(steps) if s % length == col)
            assert stored[env, col] == code(env, newest)
    # Nothing older than t - L is left.
    assert stored.min() == code(0, steps - length)
    assert set(stored[0].astype(int)) == set(range(steps - length, steps))

    win = 6
    for seed in range(5):
        w = draw(state, seed, batch_size=32, window=win)
        assert np.all((w.start >= steps - length) & (w.start <= steps - 1))
        assert np.all((w.env >= 0) & (w.env < n))
        absolute = w.start[:, None] + np.arange(win)[None, :]
        np.testing.assert_array_equal(w.valid, absolute <= steps - 1)
        np.testing.assert_array_equal(w.reward, np.where(w.valid, code(w.env[:, None], absolute), 0.0))
        np.testing.assert_array_equal(w.action[w.valid], ((w.env[:, None] + absolute) % NUM_ACTIONS)[w.valid])
        expected_policy = np.eye(NUM_ACTIONS)[(w.env[:, None] + absolute) % NUM_ACTIONS]
        np.testing.assert_array_equal(w.policy[w.valid], expected_policy[w.valid])
        np.testing.assert_array_equal(w.age, (steps - 1 - w.start) * n)
        assert not w.terminal.any() and not w.truncated.any()


def test_all_positions_are_sampled_uniformly_at_equal_priority():
    n, length, steps = 2, 8, 13
    state = fill(n, length, steps)
    w = draw(state, 0, batch_size=n * length * 8, window=3)  # stratified: each slot exactly 8 times
    pairs, counts = np.unique(np.stack([w.env, w.start], 1), axis=0, return_counts=True)
    assert len(pairs) == n * length
    np.testing.assert_array_equal(counts, 8)
    np.testing.assert_allclose(w.weight, 1.0)


def test_end_flags_are_read_at_the_right_steps_and_cleared_past_the_head():
    n, length, steps = 2, 8, 12
    terminal = np.zeros((n, steps), bool)
    truncated = np.zeros((n, steps), bool)
    terminal[0, [5, 9]] = True
    truncated[1, [7, 11]] = True  # step 11 is the write head
    state = fill(n, length, steps, terminal=terminal, truncated=truncated)
    w = draw(state, 1, batch_size=64, window=5)
    absolute = w.start[:, None] + np.arange(5)[None, :]
    col = absolute % length
    newest_written = absolute <= steps - 1
    np.testing.assert_array_equal(w.terminal, newest_written & terminal[w.env[:, None], np.minimum(absolute, steps - 1)])
    np.testing.assert_array_equal(w.truncated, newest_written & truncated[w.env[:, None], np.minimum(absolute, steps - 1)])
    # Past the head the ring still holds old data (column reuse); the window must hide it.
    assert np.any(~w.valid & (np.asarray(state.reward)[w.env[:, None], col] != 0))


def test_valid_masks_past_the_write_head_before_the_ring_is_full():
    n, length, steps = 2, 16, 6
    state = fill(n, length, steps)
    w = draw(state, 3, batch_size=32, window=5)
    assert np.all(w.start < steps)
    absolute = w.start[:, None] + np.arange(5)[None, :]
    np.testing.assert_array_equal(w.valid, absolute < steps)
    np.testing.assert_array_equal(w.reward, np.where(absolute < steps, code(w.env[:, None], absolute), 0.0))


# ---------------------------------------------------------------------------------------
# Priorities


def test_unwritten_and_zero_priority_slots_are_never_sampled():
    n, length, steps = 2, 16, 5
    state = fill(n, length, steps)
    np.testing.assert_array_equal(np.asarray(state.priority) > 0, np.broadcast_to(np.arange(length) < steps, (n, length)))
    # Also zero some written slots, including the very first and the last written one.
    zeroed = state.priority.at[0, 0].set(0.0).at[1, 2].set(0.0).at[1, steps - 1].set(0.0)
    state = state._replace(priority=zeroed)
    seen = set()
    for seed in range(20):
        w = draw(state, seed, batch_size=64, window=3)
        pairs = set(zip(w.env.tolist(), w.start.tolist()))
        assert not pairs & {(0, 0), (1, 2), (1, steps - 1)}, pairs
        assert all(s < steps for _, s in pairs)
        seen |= pairs
    assert len(seen) == 2 * steps - 3  # every positive slot does get drawn


def test_a_cdf_that_rises_across_unwritten_slots_never_draws_them(monkeypatch):
    """XLA's parallel cumsum can let the float32 cdf rise by a rounding error across a
    zero-priority slot. Exaggerate that: every slot, written or not, adds to the cdf.
    A draw there must still land on a written slot, with a finite weight."""
    n, length, steps = 3, 32, 6
    state = fill(n, length, steps)
    true_cumsum = jnp.cumsum
    monkeypatch.setattr(replay_lib.jnp, "cumsum", lambda x: true_cumsum(x + 0.5 * jnp.max(x)))
    w = jax.tree_util.tree_map(
        np.asarray, replay_lib.sample(state, jax.random.PRNGKey(0), 256, 3, alpha=1.0, beta=1.0)
    )
    assert np.all((w.start >= 0) & (w.start < steps)), w.start
    assert np.all(np.isfinite(w.weight)) and np.all(w.weight > 0)


def test_sampling_follows_priority_to_the_power_alpha():
    n, length = 1, 4
    state = fill(n, length, length)
    state = update_priorities(state, jnp.zeros(4, jnp.int32), jnp.arange(4), jnp.array([1.0, 4.0, 9.0, 16.0]))
    w = draw(state, 0, batch_size=1000, window=2, alpha=0.5, beta=1.0)
    freq = np.bincount(w.start, minlength=4) / 1000
    np.testing.assert_allclose(freq, np.array([1, 2, 3, 4]) / 10, atol=2e-3)  # stratified: off by < 1 draw
    # Importance weights (N P)^-beta, max-normalised: P = (1, 2, 3, 4) / 10 here.
    np.testing.assert_allclose(w.weight, 1.0 / np.array([1, 2, 3, 4])[w.start], rtol=1e-5)


def test_a_huge_priority_dominates_and_weights_are_max_normalised():
    n, length = 2, 8
    state = fill(n, length, length)
    state = update_priorities(state, jnp.array([1]), jnp.array([5]), jnp.array([1e6]))
    w = draw(state, 0, batch_size=64, window=3)
    hits = (w.env == 1) & (w.start == 5)
    assert hits.sum() >= 62  # the other 15 slots hold 15 / 1e6 of the mass: at most the two edge strata

    # A moderate one: high-priority samples get smaller importance weights.
    state = fill(n, length, length)
    state = update_priorities(state, jnp.array([1]), jnp.array([5]), jnp.array([50.0]))
    for beta in (1.0, 0.4):
        w = draw(state, 1, batch_size=64, window=3, alpha=1.0, beta=beta)
        hits = (w.env == 1) & (w.start == 5)
        total = 50.0 + (n * length - 1)
        assert abs(hits.mean() - 50.0 / total) < 2 / 64
        assert w.weight.max() == pytest.approx(1.0)
        np.testing.assert_allclose(w.weight[~hits], 1.0, rtol=1e-5)
        np.testing.assert_allclose(w.weight[hits], 50.0**-beta, rtol=1e-5)


def test_new_data_enters_at_the_buffers_current_max_priority():
    """As in EfficientZero: the current maximum of the stored priorities (1 when empty),
    not a running maximum that never comes down."""
    n, length = 2, 8

    def add_one(state):
        return add(
            state, frame=jnp.zeros((n, 1)), action=jnp.zeros(n, jnp.int32), reward=jnp.zeros(n),
            terminal=jnp.zeros(n, bool), truncated=jnp.zeros(n, bool), first=jnp.zeros(n, bool),
            policy=jnp.zeros((n, NUM_ACTIONS)), value=jnp.zeros(n),
        )

    state = fill(n, length, 3)
    np.testing.assert_array_equal(np.asarray(state.priority)[:, :3], 1.0)
    state = update_priorities(state, jnp.array([0, 1]), jnp.array([1, 2]), jnp.array([7.0, 0.0]))
    pri = np.asarray(state.priority)
    assert pri[0, 1] == 7.0
    assert 0.0 < pri[1, 2] <= 1e-5  # floored at eps, so still drawable
    state = add_one(state)
    np.testing.assert_array_equal(np.asarray(state.priority)[:, 3], 7.0)
    # Lowering the top priority lowers what new data gets: the maximum is the buffer's now.
    state = update_priorities(state, jnp.array([0, 0, 1]), jnp.array([1, 3, 3]), jnp.array([2.0, 0.5, 0.5]))
    state = add_one(state)
    np.testing.assert_array_equal(np.asarray(state.priority)[:, 4], 2.0)
    # Updates address absolute steps: after the ring wraps, step s lives in column s % L.
    state = fill(n, length, length + 3)
    state = update_priorities(state, jnp.array([1]), jnp.array([length + 1]), jnp.array([3.0]))
    assert np.asarray(state.priority)[1, 1] == 3.0


# ---------------------------------------------------------------------------------------
# Frame stacking


def reference_stack(first, steps, length, env, absolute, stack):
    """Frames ``absolute - stack + 1 .. absolute``, each clamped to the episode's first
    frame (or the oldest stored step), as ``frame_value`` codes, oldest first."""
    oldest = max(steps - length, 0)
    start = oldest
    for s in range(absolute, oldest - 1, -1):
        if first[env, s]:
            start = s
            break
    return [frame_value(env, max(absolute - j, start)) for j in range(stack - 1, -1, -1)]


@pytest.mark.parametrize("frame_shape,dtype", [((2,), jnp.float32), ((2, 2, 1), jnp.uint8)])
def test_frame_stacking_stops_at_episode_starts(frame_shape, dtype):
    n, length, steps, stack = 2, 8, 13, 4  # stored steps 5..12
    first = np.zeros((n, steps), bool)
    first[0, [0, 6, 9]] = True
    first[1, [0, 3, 10, 11]] = True  # env 1: a one-step episode at 10
    state = fill(n, length, steps, frame_shape=frame_shape, frame_dtype=dtype, first=first)
    env = np.repeat(np.arange(n), length)
    absolute = np.tile(np.arange(steps - length, steps), n)
    out = np.asarray(stacked_frames(state, jnp.asarray(env), jnp.asarray(absolute), stack=stack))
    channels = frame_shape[-1]
    assert out.shape == (len(env), *frame_shape[:-1], channels * stack)
    # Frame j of a stack is channels [j C, (j + 1) C) of every pixel.
    frames = out.reshape(len(env), -1, stack, channels)
    assert np.all(frames == frames[:, :1, :, :1])  # each frame constant over pixels and channels
    codes = {(e, a): frames[i, 0, :, 0].tolist() for i, (e, a) in enumerate(zip(env, absolute))}
    for (e, a), got in codes.items():
        assert got == reference_stack(first, steps, length, e, a, stack), (e, a, got)
    # Spot checks of the definition.
    assert codes[(0, 6)] == [6, 6, 6, 6]  # first frame of an episode
    assert codes[(0, 8)] == [6, 6, 7, 8]
    assert codes[(0, 12)] == [9, 10, 11, 12]
    assert codes[(1, 10)] == [110] * 4  # a one-step episode
    assert codes[(1, 11)] == [111] * 4
    assert codes[(1, 9)] == [106, 107, 108, 109]
    assert codes[(1, 6)] == [105, 105, 105, 106]  # the oldest stored step (5) repeats


def test_frame_stacking_with_batched_positions_and_stack_one():
    n, length, steps = 2, 8, 10
    first = np.zeros((n, steps), bool)
    first[:, 0] = True
    first[1, 7] = True
    state = fill(n, length, steps, first=first)
    env = jnp.array([0, 1])
    absolute = jnp.array([[2, 3, 4], [7, 8, 9]])
    plain = np.asarray(stacked_frames(state, env, absolute, stack=1))
    np.testing.assert_array_equal(plain[..., 0], frame_value(np.array([[0], [1]]), np.asarray(absolute)))
    out = np.asarray(stacked_frames(state, env, absolute, stack=3))
    assert out.shape == (2, 3, 3)
    # env 0: the oldest stored step is 2, so stacks ending there repeat it.
    np.testing.assert_array_equal(out[0], [[2, 2, 2], [2, 2, 3], [2, 3, 4]])
    np.testing.assert_array_equal(out[1], [[107, 107, 107], [107, 107, 108], [107, 108, 109]])


def test_jitted_sample_compiles_once():
    counter = {"traces": 0}

    def traced(state, rng):
        counter["traces"] += 1
        return replay_lib.sample(state, rng, 8, 4, alpha=0.6, beta=0.4)

    fn = jax.jit(traced)
    state = fill(2, 8, 5)
    for seed in range(3):
        fn(state, jax.random.PRNGKey(seed))
        state = update_priorities(state, jnp.array([0]), jnp.array([seed]), jnp.array([2.0 + seed]))
    assert counter["traces"] == 1


def test_running_max_priority_keeps_new_data_on_top():
    """``new_priority="running_max"``: the largest priority ever set, even after it is lowered."""
    n, length = 2, 8
    state = fill(n, length, 3)
    state = update_priorities(state, jnp.array([0]), jnp.array([1]), jnp.array([7.0]))
    state = update_priorities(state, jnp.array([0]), jnp.array([1]), jnp.array([2.0]))
    state = add(
        state, frame=jnp.zeros((n, 1)), action=jnp.zeros(n, jnp.int32), reward=jnp.zeros(n),
        terminal=jnp.zeros(n, bool), truncated=jnp.zeros(n, bool), first=jnp.zeros(n, bool),
        policy=jnp.zeros((n, NUM_ACTIONS)), value=jnp.zeros(n), new_priority="running_max",
    )
    np.testing.assert_array_equal(np.asarray(state.priority)[:, 3], 7.0)
