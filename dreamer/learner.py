"""The learner: train state, optimiser and the jitted programs for acting and training.

``make_train_fn`` returns one function that scans ``updates_per_call`` updates, each
``sample -> targets (reanalysis + target-param bootstraps) -> loss -> optax -> new
priorities``, with no host round-trip inside. The caller jits it and donates the train
and replay states. ``make_act_fn`` plans for all envs in one call.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dreamer import replay as replay_lib
from dreamer import targets as targets_lib
from dreamer.augment import augment
from dreamer.config import Config, LearnerConfig
from dreamer.losses import TrainBatch, loss_fn
from dreamer.networks import LearnedModel
from dreamer.planner import plan


class TrainState(NamedTuple):
    params: Any
    target_params: Any
    opt_state: Any
    step: jnp.ndarray  # [] int32 updates done
    rng: jnp.ndarray


def learning_rate_schedule(cfg: LearnerConfig) -> optax.Schedule:
    """Linear warm-up to ``learning_rate``, then x ``lr_decay_factor`` after ``lr_decay_updates``."""

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        warm = jnp.minimum(1.0, (step + 1.0) / max(cfg.warmup_updates, 1))
        decay = jnp.where(step >= cfg.lr_decay_updates, cfg.lr_decay_factor, 1.0)
        return cfg.learning_rate * warm * decay

    return schedule


def make_optimizer(cfg: LearnerConfig) -> optax.GradientTransformation:
    schedule = learning_rate_schedule(cfg)
    if cfg.optimizer == "sgd":
        inner = optax.chain(
            optax.add_decayed_weights(cfg.weight_decay),
            optax.sgd(schedule, momentum=cfg.momentum),
        )
    else:
        inner = optax.adamw(schedule, weight_decay=cfg.weight_decay)
    return optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), inner)


def init_train_state(model: LearnedModel, cfg: Config, rng: jnp.ndarray) -> TrainState:
    init_rng, rng = jax.random.split(rng)
    params = model.init(init_rng)
    opt_state = make_optimizer(cfg.learner).init(params)
    target_params = jax.tree_util.tree_map(jnp.copy, params)  # distinct buffers, so both can be donated
    return TrainState(params, target_params, opt_state, jnp.zeros((), jnp.int32), rng)


def reanalyze_config(cfg: Config):
    """The planner settings for reanalysis: those of acting (root noise included, as in EfficientZero)."""
    return cfg.planner


def make_batch(
    model: LearnedModel,
    cfg: Config,
    params,
    target_params,
    replay: replay_lib.ReplayState,
    rng: jnp.ndarray,
    beta: jnp.ndarray,
) -> tuple[TrainBatch, replay_lib.Window, dict]:
    """Samples a window and builds its targets: bootstraps from ``target_params``, policy
    targets re-searched with ``params`` for the first ``reanalyze_fraction`` of the batch."""
    lc, rc = cfg.learner, cfg.replay
    k_max, bsz = lc.unroll_steps, rc.batch_size
    width = k_max + lc.td_steps + 1
    sample_rng, search_rng = jax.random.split(rng)
    window = replay_lib.sample(replay, sample_rng, bsz, width, alpha=rc.alpha, beta=beta)
    tp = targets_lib.plan_targets(
        window,
        unroll_steps=k_max,
        td_steps=lc.td_steps,
        td_age_step=lc.td_age_step,
        discount=cfg.planner.discount,
        prefix_horizon=cfg.planner.value_prefix_horizon,
    )
    stack = rc.frame_stack
    positions = window.start[:, None] + jnp.arange(k_max + 1)[None, :]
    obs = replay_lib.stacked_frames(replay, window.env, positions, stack)  # [B, K+1, ...]
    boot_abs = window.start[:, None] + tp.bootstrap_index
    boot_obs = replay_lib.stacked_frames(replay, window.env, boot_abs, stack)
    flat = lambda x: x.reshape((-1, *x.shape[2:]))  # noqa: E731
    boot_values = model.initial_inference(target_params, flat(boot_obs)).value.reshape(bsz, k_max + 1)
    value = targets_lib.value_targets(tp, boot_values)

    policy = window.policy[:, : k_max + 1]
    n_re = int(round(lc.reanalyze_fraction * bsz))
    metrics = {}
    if n_re > 0:
        roots = flat(obs[:n_re])
        out = plan(params, search_rng, roots, model=model, config=reanalyze_config(cfg))
        fresh = out.action_weights.reshape(n_re, k_max + 1, -1)
        policy = jnp.concatenate([fresh, policy[n_re:]], axis=0)
        metrics["search/reanalyze_root_value"] = jnp.mean(out.root_value)
    batch = TrainBatch(
        obs=obs,
        action=window.action[:, :k_max],
        value=value,
        value_mask=tp.value_mask.astype(jnp.float32),
        reward=tp.value_prefix if model.value_prefix else tp.reward,
        reward_mask=tp.reward_mask.astype(jnp.float32),
        policy=policy,
        policy_mask=tp.in_episode.astype(jnp.float32),
        weight=window.weight,
    )
    metrics["train/td_steps"] = jnp.mean(tp.td_steps.astype(jnp.float32))
    return batch, window, metrics


def make_update_fn(model: LearnedModel, cfg: Config) -> Callable:
    """One update on a sampled batch: ``(state, replay) -> (state, replay, metrics)``."""
    lc, rc = cfg.learner, cfg.replay
    optimizer = make_optimizer(lc)
    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    is_image = len(model.observation_shape) == 3

    def update(state: TrainState, replay: replay_lib.ReplayState):
        rng, batch_rng, aug_rng = jax.random.split(state.rng, 3)
        progress = jnp.minimum(1.0, state.step.astype(jnp.float32) / rc.beta_anneal_updates)
        beta = rc.beta + (1.0 - rc.beta) * progress
        batch, window, metrics = make_batch(model, cfg, state.params, state.target_params, replay, batch_rng, beta)
        if lc.augment and is_image:
            batch = batch._replace(obs=augment(aug_rng, batch.obs))
        (loss, (loss_metrics, priorities)), grads = grad_fn(
            state.params, model, batch, lc, cfg.planner.value_prefix_horizon
        )
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        refresh = step % lc.target_update_interval == 0
        target_params = jax.tree_util.tree_map(
            lambda new, old: jnp.where(refresh, new, old), params, state.target_params
        )
        replay = replay_lib.update_priorities(replay, window.env, window.start, priorities, rc.priority_eps)
        metrics = {
            **metrics,
            **loss_metrics,
            "train/grad_norm": optax.global_norm(grads),
            "train/learning_rate": learning_rate_schedule(lc)(state.step),
            "train/priority_mean": jnp.mean(priorities),
            "train/beta": beta,
        }
        return TrainState(params, target_params, opt_state, step, rng), replay, metrics

    return update


def make_train_fn(model: LearnedModel, cfg: Config) -> Callable:
    """``updates_per_call`` updates scanned: ``(state, replay) -> (state, replay, mean metrics)``.

    Jit it with ``donate_argnums=(0, 1)``.
    """
    update = make_update_fn(model, cfg)

    def train(state: TrainState, replay: replay_lib.ReplayState):
        def body(carry, _):
            s, r = carry
            s, r, m = update(s, r)
            return (s, r), m

        (state, replay), metrics = jax.lax.scan(body, (state, replay), None, length=cfg.learner.updates_per_call)
        return state, replay, jax.tree_util.tree_map(jnp.mean, metrics)

    return train


class ActOutput(NamedTuple):
    action: jnp.ndarray  # [N]
    policy: jnp.ndarray  # [N, A] search policy
    root_value: jnp.ndarray  # [N]
    predicted_value: jnp.ndarray  # [N]


def make_act_fn(model: LearnedModel, cfg: Config, *, evaluation: bool = False) -> Callable:
    """``act(params, rng, obs, temperature) -> ActOutput``; evaluation turns root noise off."""
    planner_cfg = cfg.planner
    if evaluation:
        planner_cfg = dataclasses.replace(planner_cfg, dirichlet_fraction=0.0)

    def act(params, rng, obs, temperature):
        out = plan(params, rng, obs, model=model, config=planner_cfg, temperature=temperature)
        return ActOutput(out.action, out.action_weights, out.root_value, out.predicted_value)

    return act
