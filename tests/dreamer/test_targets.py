"""Tests of the value, value-prefix and reward targets (dreamer/targets.py).

The reference is a plain Python loop written from the module docstring:

* position ``k``'s target sums ``discount^i r_{k+i}`` for ``i < n`` and bootstraps
  ``discount^n V(s_{k+n})``;
* a terminal step ``q`` stops the sum: ``r_q`` counts, no bootstrap;
* a truncated step ``q``, or the write head (``q + 1`` not written), stops the sum with a
  bootstrap ``discount^(q-k) V(s_q)`` and leaves ``r_q`` out;
* after the first episode end at or after position 0: a terminal makes the rest
  absorbing (target 0, masked in), a truncation or the write head masks the rest out;
* ``n = clip(td_steps - age // td_age_step, 1, td_steps)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dreamer import replay as replay_lib
from dreamer import targets as targets_lib
from dreamer.replay import Window


# ---------------------------------------------------------------------------------------
# The reference


def reference(window: dict, values: np.ndarray, *, unroll_steps, td_steps, td_age_step, discount, prefix_horizon):
    """Targets of one sample (numpy, ``W`` steps) by the docstring's definition."""
    term, trunc, valid, reward = window["terminal"], window["truncated"], window["valid"], window["reward"]
    width = len(reward)
    n = int(min(max(td_steps - window["age"] // td_age_step, 1), td_steps))

    first_end = width
    for p in range(width):
        if term[p] or trunc[p]:
            first_end = p
            break
    end_is_terminal = first_end < width and bool(term[first_end])

    def written(p):
        return p < width and bool(valid[p])

    value, value_mask, in_episode = [], [], []
    for k in range(unroll_steps + 1):
        inside = k <= first_end and written(k)
        in_episode.append(inside)
        if not inside:
            absorbing = end_is_terminal and k > first_end
            value.append(0.0)
            value_mask.append(absorbing)
            continue
        z, disc, stopped = 0.0, 1.0, False
        for i in range(n):
            q = k + i
            if term[q]:  # terminal: r_q counts, nothing follows
                z += disc * reward[q]
                stopped = True
                break
            if trunc[q] or not written(q + 1):  # time limit or write head: bootstrap at s_q
                z += disc * values[q]
                stopped = True
                break
            z += disc * reward[q]
            disc *= discount
        if not stopped:
            z += disc * values[k + n]
        value.append(z)
        value_mask.append(True)

    # Per-step reward targets of unroll transitions k-1 -> k, k = 1..K.
    rewards, reward_mask = [], []
    for k in range(1, unroll_steps + 1):
        j = k - 1
        after_terminal = end_is_terminal and j > first_end
        rewards.append(0.0 if after_terminal else float(reward[j]))
        reward_mask.append(value_mask[j])
    # Value prefix: the sum of step rewards since the last reset (every prefix_horizon steps).
    prefix = []
    for k in range(1, unroll_steps + 1):
        block_start = ((k - 1) // prefix_horizon) * prefix_horizon
        prefix.append(sum(rewards[block_start:k]))
    return dict(
        value=np.array(value),
        value_mask=np.array(value_mask),
        in_episode=np.array(in_episode),
        reward=np.array(rewards),
        reward_mask=np.array(reward_mask),
        value_prefix=np.array(prefix),
        td_steps=n,
    )


# ---------------------------------------------------------------------------------------
# Helpers


def make_window(terminal, truncated, valid, reward, age, policy_dim=2) -> Window:
    terminal = np.asarray(terminal, bool)
    b, w = terminal.shape
    return Window(
        env=jnp.zeros((b,), jnp.int32),
        start=jnp.zeros((b,), jnp.int32),
        weight=jnp.ones((b,), jnp.float32),
        action=jnp.zeros((b, w), jnp.int32),
        reward=jnp.asarray(reward, jnp.float32),
        terminal=jnp.asarray(terminal),
        truncated=jnp.asarray(truncated, bool),
        valid=jnp.asarray(valid, bool),
        policy=jnp.full((b, w, policy_dim), 1.0 / policy_dim, jnp.float32),
        age=jnp.asarray(age, jnp.int32),
    )


@functools.lru_cache(maxsize=None)
def planner_fn(unroll_steps, td_steps, td_age_step, discount, prefix_horizon):
    """Jitted ``(window, bootstrap values [B, W]) -> (plan, value targets)``."""

    def run(window, values):
        plan = targets_lib.plan_targets(
            window,
            unroll_steps=unroll_steps,
            td_steps=td_steps,
            td_age_step=td_age_step,
            discount=discount,
            prefix_horizon=prefix_horizon,
        )
        boot = jnp.take_along_axis(values, plan.bootstrap_index, axis=1)
        return plan, targets_lib.value_targets(plan, boot)

    return jax.jit(run)


def random_windows(rng: np.random.Generator, batch, width, td_steps, td_age_step):
    """Windows as the replay would produce them: a written prefix, ends only where written."""
    heads = rng.integers(1, width + 1, size=batch)  # number of written steps
    heads[: batch // 3] = width  # a third fully written
    valid = np.arange(width)[None, :] < heads[:, None]
    terminal = (rng.random((batch, width)) < 0.12) & valid
    truncated = (rng.random((batch, width)) < 0.08) & valid  # sometimes both flags at once
    reward = np.where(valid, rng.normal(size=(batch, width)), 0.0).astype(np.float32)
    age = rng.integers(0, (td_steps + 2) * td_age_step, size=batch)
    age[:4] = [0, td_age_step - 1, td_age_step, 100 * td_age_step]
    return dict(terminal=terminal, truncated=truncated, valid=valid, reward=reward, age=age)


def check_against_reference(arrays, values, settings, atol=1e-4):
    window = make_window(arrays["terminal"], arrays["truncated"], arrays["valid"], arrays["reward"], arrays["age"])
    plan, value = planner_fn(*settings)(window, jnp.asarray(values, jnp.float32))
    unroll, td, age_step, discount, horizon = settings
    value, plan = np.asarray(value), jax.tree_util.tree_map(np.asarray, plan)
    batch = values.shape[0]
    assert value.shape == (batch, unroll + 1)
    assert plan.value_prefix.shape == plan.reward.shape == plan.reward_mask.shape == (batch, unroll)
    for b in range(batch):
        one = {key: arr[b] for key, arr in arrays.items()}
        ref = reference(
            one, values[b], unroll_steps=unroll, td_steps=td, td_age_step=age_step, discount=discount,
            prefix_horizon=horizon,
        )
        msg = f"sample {b}: {one}"
        assert plan.td_steps[b] == ref["td_steps"], msg
        np.testing.assert_array_equal(plan.value_mask[b], ref["value_mask"], err_msg=msg)
        np.testing.assert_array_equal(plan.in_episode[b], ref["in_episode"], err_msg=msg)
        mask = ref["value_mask"]
        np.testing.assert_allclose(value[b][mask], ref["value"][mask], rtol=1e-5, atol=atol, err_msg=msg)
        np.testing.assert_array_equal(plan.reward_mask[b], ref["reward_mask"], err_msg=msg)
        rmask = ref["reward_mask"]
        np.testing.assert_allclose(plan.reward[b][rmask], ref["reward"][rmask], atol=atol, err_msg=msg)
        np.testing.assert_allclose(plan.value_prefix[b][rmask], ref["value_prefix"][rmask], atol=atol, err_msg=msg)
        # No bootstrap ever reads past the written part of the window.
        boot_used = plan.bootstrap_discount[b] != 0
        assert np.all(one["valid"][plan.bootstrap_index[b][boot_used]]), msg


# ---------------------------------------------------------------------------------------
# Randomised comparison with the reference


@pytest.mark.parametrize(
    "settings",
    [
        # (unroll_steps, td_steps, td_age_step, discount, prefix_horizon)
        (5, 5, 10, 0.9, 2),
        (4, 3, 7, 0.8, 3),
    ],
)
def test_random_windows_match_reference(settings):
    unroll, td, age_step, _, _ = settings
    rng = np.random.default_rng(sum(settings[:3]))
    width = unroll + td + 1
    batch = 256
    arrays = random_windows(rng, batch, width, td, age_step)
    values = rng.normal(scale=3.0, size=(batch, width)).astype(np.float32)
    # The draw must cover the cases the reference distinguishes.
    first_term = arrays["terminal"][:, : unroll + 1].any(1)
    assert first_term.sum() > 20 and arrays["truncated"][:, : unroll + 1].any(1).sum() > 20
    assert (~arrays["valid"][:, unroll]).sum() > 20
    assert len(np.unique(np.clip(td - arrays["age"] // age_step, 1, td))) == td
    check_against_reference(arrays, values, settings)


def test_window_shorter_than_unroll_plus_td_is_rejected():
    window = make_window(np.zeros((2, 6)), np.zeros((2, 6)), np.ones((2, 6)), np.zeros((2, 6)), [0, 0])
    with pytest.raises(ValueError, match="shorter"):
        targets_lib.plan_targets(window, unroll_steps=3, td_steps=3, td_age_step=10, discount=0.9, prefix_horizon=2)


def test_adaptive_td_steps():
    age = jnp.array([0, 9, 10, 19, 20, 39, 40, 10_000])
    np.testing.assert_array_equal(targets_lib.adaptive_td_steps(age, 5, 10), [5, 5, 4, 4, 3, 2, 1, 1])


# ---------------------------------------------------------------------------------------
# Hand-computed cases: K = 3, td = 2, W = 6, discount 1/2, r = 1..6, V = 10..60

HAND = (3, 2, 10, 0.5, 2)
R = np.arange(1.0, 7.0)
V = 10.0 * np.arange(1.0, 7.0)


def hand_case(terminal=(), truncated=(), written=6, age=0):
    term = np.zeros(6, bool)
    trunc = np.zeros(6, bool)
    term[list(terminal)] = True
    trunc[list(truncated)] = True
    valid = np.arange(6) < written
    window = make_window(term[None], trunc[None], valid[None], np.where(valid, R, 0.0)[None], [age])
    plan, value = planner_fn(*HAND)(window, jnp.asarray(V[None], jnp.float32))
    return jax.tree_util.tree_map(lambda x: np.asarray(x)[0], plan), np.asarray(value)[0]


def test_hand_no_end():
    plan, value = hand_case()
    # z_k = r_k + r_{k+1} / 2 + V_{k+2} / 4
    np.testing.assert_allclose(value, [1 + 1 + 7.5, 2 + 1.5 + 10, 3 + 2 + 12.5, 4 + 2.5 + 15])
    np.testing.assert_array_equal(plan.value_mask, [1, 1, 1, 1])
    np.testing.assert_allclose(plan.reward, [1, 2, 3])
    np.testing.assert_allclose(plan.value_prefix, [1, 3, 3])  # reset before unroll step 3


def test_hand_old_data_uses_shorter_horizon():
    plan, value = hand_case(age=10)  # n = 2 - 10 // 10 = 1
    assert plan.td_steps == 1
    np.testing.assert_allclose(value, [1 + 10, 2 + 15, 3 + 20, 4 + 25])


def test_hand_terminal_inside_window():
    plan, value = hand_case(terminal=[1, 4])  # the second end belongs to a later episode
    # z_0 = r_0 + r_1 / 2 (terminal counts its reward, no bootstrap); z_1 = r_1; then absorbing.
    np.testing.assert_allclose(value, [1 + 1, 2, 0, 0])
    np.testing.assert_array_equal(plan.value_mask, [1, 1, 1, 1])
    np.testing.assert_array_equal(plan.in_episode, [1, 1, 0, 0])
    np.testing.assert_allclose(plan.reward, [1, 2, 0])
    np.testing.assert_array_equal(plan.reward_mask, [1, 1, 1])
    np.testing.assert_allclose(plan.value_prefix, [1, 3, 0])


def test_hand_terminal_at_position_zero():
    plan, value = hand_case(terminal=[0])
    np.testing.assert_allclose(value, [1, 0, 0, 0])
    np.testing.assert_array_equal(plan.value_mask, [1, 1, 1, 1])
    np.testing.assert_allclose(plan.reward, [1, 0, 0])
    np.testing.assert_allclose(plan.value_prefix, [1, 1, 0])


def test_hand_truncation():
    plan, value = hand_case(truncated=[1])
    # z_0 = r_0 + V_1 / 2 (r_1 left out); z_1 = V_1; after it nothing is known.
    np.testing.assert_allclose(value[:2], [1 + 10, 20])
    np.testing.assert_array_equal(plan.value_mask, [1, 1, 0, 0])
    np.testing.assert_array_equal(plan.in_episode, [1, 1, 0, 0])
    np.testing.assert_allclose(plan.reward[:2], [1, 2])
    np.testing.assert_array_equal(plan.reward_mask, [1, 1, 0])


def test_hand_terminal_and_truncated_together_is_terminal():
    plan, value = hand_case(terminal=[1], truncated=[1])
    np.testing.assert_allclose(value, [2, 2, 0, 0])
    np.testing.assert_array_equal(plan.value_mask, [1, 1, 1, 1])


def test_hand_write_head():
    plan, value = hand_case(written=3)  # steps 0..2 written, step 2 is the write head
    # z_0 = r_0 + r_1 / 2 + V_2 / 4; z_1 = r_1 + V_2 / 2 (r_2 left out); z_2 = V_2.
    np.testing.assert_allclose(value[:3], [1 + 1 + 7.5, 2 + 15, 30])
    np.testing.assert_array_equal(plan.value_mask, [1, 1, 1, 0])
    np.testing.assert_allclose(plan.reward, [1, 2, 3])  # r_2 itself is stored
    np.testing.assert_array_equal(plan.reward_mask, [1, 1, 1])


def test_hand_terminal_at_write_head_is_terminal():
    plan, value = hand_case(terminal=[2], written=3)
    # n = 2: z_0 never reaches the terminal and bootstraps V_2; z_1 stops at it.
    np.testing.assert_allclose(value, [1 + 1 + 7.5, 2 + 1.5, 3, 0])
    np.testing.assert_array_equal(plan.value_mask, [1, 1, 1, 1])


def test_hand_window_across_the_replay_ring_boundary():
    """A window read from the replay across column L-1 -> 0, ending at the write head."""
    length, steps = 8, 11  # stored absolute steps 3..10; column of step s is s % 8
    state = replay_lib.init(1, length, (1,), jnp.float32, 2)
    for s in range(steps):
        state = replay_lib.add(
            state, frame=jnp.array([[float(s)]]), action=jnp.array([s % 2]), reward=jnp.array([float(s)]),
            terminal=jnp.array([False]), truncated=jnp.array([False]), first=jnp.array([s == 0]),
            policy=jnp.full((1, 2), 0.5), value=jnp.array([100.0 + s]),
        )
    # Only absolute step 6 (column 6) can be drawn.
    only = jnp.zeros_like(state.priority).at[0, 6].set(1.0)
    window = replay_lib.sample(state._replace(priority=only), jax.random.PRNGKey(0), 4, 6, alpha=1.0, beta=1.0)
    np.testing.assert_array_equal(window.start, [6] * 4)
    np.testing.assert_array_equal(window.valid[0], [1, 1, 1, 1, 1, 0])  # step 11 is not written
    np.testing.assert_allclose(window.reward[0], [6, 7, 8, 9, 10, 0])
    # Bootstrap values V(s) = 100 + absolute step, read from the window's absolute steps.
    values = 100.0 + window.start[:, None] + jnp.arange(6)[None, :]
    plan, value = planner_fn(*HAND)(window, values.astype(jnp.float32))
    expected = [
        6 + 7 / 2 + 108 / 4,
        7 + 8 / 2 + 109 / 4,
        8 + 9 / 2 + 110 / 4,
        9 + 110 / 2,  # step 10 is the write head: bootstrap there, r_10 left out
    ]
    np.testing.assert_allclose(value[0], expected, rtol=1e-6)
    np.testing.assert_array_equal(plan.value_mask[0], [1, 1, 1, 1])
    np.testing.assert_array_equal(plan.bootstrap_index[0], [2, 3, 4, 4])
