"""Value, value-prefix and policy targets from a sampled replay window.

For an unroll of ``K`` steps from position 0 of a window, position ``k`` gets the
n-step value target

    z_k = sum_{i<n} discount^i r_{k+i} + discount^n V_target(s_{k+n})

with EfficientZero's off-policy correction: ``n = clip(td_steps - age // td_age_step,
1, td_steps)`` shrinks for old data. The sum stops early:

* at a terminal step ``q``: ``r_q`` counts and there is no bootstrap;
* at a truncated step ``q`` (time limit) or at the write head (``q + 1`` not written
  yet): the bootstrap moves to ``V_target(s_q)``, which is stored, and ``r_q`` is left
  out, so the estimate stays unbiased.

After a terminal state the episode is absorbing: value and reward targets are 0 and
still trained (the model learns that nothing follows). After a truncation or the write
head nothing is known: those positions are masked out. Policy and consistency targets
are used only inside the episode.

Shapes: ``B`` batch, ``W`` window = ``K + td_steps + 1``, ``K`` unroll steps.
"""

from __future__ import annotations

from typing import NamedTuple

import jax.numpy as jnp

from dreamer.replay import Window
from dreamer.world_model import starts_prefix_segment


class TargetPlan(NamedTuple):
    """Everything but the bootstrap values, which need a network."""

    bootstrap_index: jnp.ndarray  # [B, K+1] window index whose value is bootstrapped
    bootstrap_discount: jnp.ndarray  # [B, K+1] discount^m on that value (0: no bootstrap)
    reward_sum: jnp.ndarray  # [B, K+1] discounted reward sum before the bootstrap
    value_mask: jnp.ndarray  # [B, K+1]
    in_episode: jnp.ndarray  # [B, K+1] position k belongs to position 0's episode
    value_prefix: jnp.ndarray  # [B, K] value-prefix targets for unroll steps 1..K
    reward: jnp.ndarray  # [B, K] per-step reward targets for unroll steps 1..K
    reward_mask: jnp.ndarray  # [B, K]
    td_steps: jnp.ndarray  # [B] the n used per sample


def adaptive_td_steps(age: jnp.ndarray, td_steps: int, td_age_step: int) -> jnp.ndarray:
    """EfficientZero's off-policy correction: the TD horizon shrinks with data age."""
    return jnp.clip(td_steps - age // td_age_step, 1, td_steps).astype(jnp.int32)


def plan_targets(
    window: Window,
    *,
    unroll_steps: int,
    td_steps: int,
    td_age_step: int,
    discount: float,
    prefix_horizon: int,
) -> TargetPlan:
    """Computes target indices, masks and reward sums from a replay window."""
    k_max = unroll_steps
    width = window.reward.shape[1]
    if width < k_max + td_steps + 1:
        raise ValueError(f"window of {width} steps is shorter than unroll + td + 1 = {k_max + td_steps + 1}")
    batch = window.reward.shape[0]
    term, trunc, valid, reward = window.terminal, window.truncated, window.valid, window.reward
    ended = term | trunc
    pos = jnp.arange(width)[None, :]
    # First episode end at or after position 0 (width if none in the window).
    first_end = jnp.min(jnp.where(ended, pos, width), axis=1)  # [B]
    end_is_terminal = jnp.take_along_axis(term, jnp.minimum(first_end, width - 1)[:, None], 1)[:, 0]
    end_is_terminal = end_is_terminal & (first_end < width)
    in_episode = (pos <= first_end[:, None]) & valid  # [B, W]
    after_terminal = (pos > first_end[:, None]) & end_is_terminal[:, None]
    value_mask_w = in_episode | after_terminal

    # A step after which the future is unknown (and not terminal): bootstrap there.
    next_valid = jnp.concatenate([valid[:, 1:], jnp.zeros((batch, 1), bool)], axis=1)
    stop_at = (trunc | ~next_valid) & ~term

    n = adaptive_td_steps(window.age, td_steps, td_age_step)
    boot_idx, boot_disc, reward_sum = [], [], []
    for k in range(k_max + 1):
        acc = jnp.zeros((batch,), jnp.float32)
        disc = jnp.ones((batch,), jnp.float32)
        done = ~in_episode[:, k]  # outside the episode: no sum, no bootstrap
        b_idx = jnp.full((batch,), k, jnp.int32)
        b_disc = jnp.zeros((batch,), jnp.float32)
        for i in range(td_steps):
            p = k + i
            active = ~done & (i < n)
            stop = active & stop_at[:, p]
            b_idx = jnp.where(stop, p, b_idx)
            b_disc = jnp.where(stop, disc, b_disc)
            done = done | stop
            active = active & ~stop
            acc = acc + jnp.where(active, disc * reward[:, p], 0.0)
            done = done | (active & term[:, p])
            disc = jnp.where(active, disc * discount, disc)
        b_idx = jnp.where(done, b_idx, k + n)
        b_disc = jnp.where(done, b_disc, disc)
        boot_idx.append(b_idx)
        boot_disc.append(b_disc)
        reward_sum.append(acc)
    boot_idx = jnp.stack(boot_idx, 1)
    boot_disc = jnp.stack(boot_disc, 1)
    reward_sum = jnp.stack(reward_sum, 1)

    # Per-step rewards of unroll transitions (k-1 -> k), zero after a terminal state.
    step_reward = jnp.where(after_terminal, 0.0, reward)[:, :k_max]
    reward_mask = value_mask_w[:, :k_max]
    prefixes, running = [], jnp.zeros((batch,), jnp.float32)
    for k in range(1, k_max + 1):
        if starts_prefix_segment(k, prefix_horizon):
            running = jnp.zeros((batch,), jnp.float32)
        running = running + step_reward[:, k - 1]
        prefixes.append(running)
    return TargetPlan(
        bootstrap_index=boot_idx,
        bootstrap_discount=boot_disc,
        reward_sum=reward_sum,
        value_mask=value_mask_w[:, : k_max + 1],
        in_episode=in_episode[:, : k_max + 1],
        value_prefix=jnp.stack(prefixes, 1) if prefixes else jnp.zeros((batch, 0), jnp.float32),
        reward=step_reward,
        reward_mask=reward_mask,
        td_steps=n,
    )


def value_targets(plan: TargetPlan, bootstrap_values: jnp.ndarray) -> jnp.ndarray:
    """``[B, K+1]`` value targets given the values at ``plan.bootstrap_index`` (``[B, K+1]``)."""
    return plan.reward_sum + plan.bootstrap_discount * bootstrap_values
