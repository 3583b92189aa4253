"""The learner: EfficientZero's update over any trainable world model and the device replay.

:class:`Learner` holds the model and the settings it needs and exposes each stage of an
update as a pure function, so a profile or another agent can call them one by one:

    sample -> targets -> observations -> bootstrap -> reanalyse -> assemble
           -> loss and gradient -> optax -> new priorities

With ``reanalyze="sweep"`` the bootstrap and reanalyse stages are gathers of what the last
reanalysis sweep stored (:mod:`dreamer.reanalyze`), and the sweep runs with each target
refresh, once per ``target_update_interval`` updates, at the end of a train call.

``make_batch`` chains the batch stages, ``update`` does one whole update, and ``train``
scans ``updates_per_call`` updates with no host round-trip inside. Nothing here calls
``jax.jit``: the caller jits (donating the train and replay states).

    learner = Learner(model, cfg.learner, cfg.replay, cfg.planner)
    state = learner.init(jax.random.PRNGKey(0))
    train = jax.jit(learner.train, donate_argnums=(0, 1))
    state, replay, metrics = train(state, replay)
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from dreamer import reanalyze
from dreamer import replay as replay_lib
from dreamer import targets as targets_lib
from dreamer.agent import in_lockstep
from dreamer.augment import augment_branches
from dreamer.config import LearnerConfig, PlannerConfig, ReplayConfig
from dreamer.losses import TrainBatch, loss_fn
from dreamer.planner import plan, root_diagnostics
from dreamer.sharding import along_data
from dreamer.world_model import TrainableWorldModel


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
    chain = optax.chain(optax.clip_by_global_norm(cfg.max_grad_norm), inner)
    # One flat buffer instead of a kernel per parameter leaf: on a GPU the optimiser is
    # launch-bound (about 100 small leaves), not bandwidth-bound.
    return optax.flatten(chain) if cfg.flat_optimizer else chain


class Observations(NamedTuple):
    """Stacked observations a batch needs: at the unroll positions and at the bootstraps."""

    unroll: jnp.ndarray  # [B, K+1, *obs_shape]
    bootstrap: jnp.ndarray  # [B, K+1, *obs_shape]


def policy_entropy(policy: jnp.ndarray, mask: jnp.ndarray) -> jnp.ndarray:
    """Mean entropy (nats) of the policy targets ``[B, K+1, A]`` where ``mask`` is set: near
    log(A) means the targets teach the policy next to nothing."""
    ent = -jnp.sum(jnp.where(policy > 0, policy * jnp.log(jnp.where(policy > 0, policy, 1.0)), 0.0), axis=-1)
    return jnp.sum(ent * mask) / jnp.maximum(jnp.sum(mask), 1.0)


def _flat(x: jnp.ndarray) -> jnp.ndarray:
    return x.reshape((-1, *x.shape[2:]))


@dataclasses.dataclass(frozen=True)
class Learner:
    """EfficientZero's learner for ``model`` (any :class:`~dreamer.world_model.TrainableWorldModel`).

    ``planner`` gives the discount of the value targets and the reanalysis search settings.
    """

    model: TrainableWorldModel
    learner: LearnerConfig
    replay: ReplayConfig
    planner: PlannerConfig

    @property
    def window(self) -> int:
        """Replay steps per sample: the unroll, the TD horizon and the bootstrap position."""
        return self.learner.unroll_steps + self.learner.td_steps + 1

    def init(self, rng: jnp.ndarray) -> TrainState:
        init_rng, rng = jax.random.split(rng)
        params = self.model.init(init_rng)
        opt_state = make_optimizer(self.learner).init(params)
        target_params = jax.tree_util.tree_map(jnp.copy, params)  # distinct buffers, so both can be donated
        return TrainState(params, target_params, opt_state, jnp.zeros((), jnp.int32), rng)

    # -- batch stages ------------------------------------------------------------------------
    def sample(self, replay: replay_lib.ReplayState, rng: jnp.ndarray, beta: jnp.ndarray) -> replay_lib.Window:
        """Windows of ``window`` steps at ``batch_size`` positions drawn by priority."""
        rc = self.replay
        return replay_lib.sample(replay, rng, rc.batch_size, self.window, alpha=rc.alpha, beta=beta)

    def targets(self, window: replay_lib.Window) -> targets_lib.TargetPlan:
        """Reward sums, bootstrap positions and masks (no network)."""
        lc = self.learner
        return targets_lib.plan_targets(
            window,
            unroll_steps=lc.unroll_steps,
            td_steps=lc.td_steps,
            td_age_step=lc.td_age_step,
            discount=self.planner.discount,
            prefix_horizon=self.model.value_prefix_horizon,
        )

    def observations(self, replay: replay_lib.ReplayState, window: replay_lib.Window,
                     plan_: targets_lib.TargetPlan, bootstrap: bool = True) -> Observations:
        """Frame stacks at the unroll positions and (``bootstrap``) at the bootstrap positions."""
        k_max, stack = self.learner.unroll_steps, self.replay.frame_stack
        positions = window.start[:, None] + jnp.arange(k_max + 1)[None, :]
        unroll = replay_lib.stacked_frames(replay, window.env, positions, stack)
        if not bootstrap:
            return Observations(unroll, None)
        boot = replay_lib.stacked_frames(replay, window.env, window.start[:, None] + plan_.bootstrap_index, stack)
        return Observations(unroll, boot)

    def bootstrap(self, target_params, boot_obs: jnp.ndarray) -> jnp.ndarray:
        """Target-network values ``[B, K+1]`` at the bootstrap positions."""
        values = self.model.initial_inference(target_params, _flat(boot_obs)).value
        return values.reshape(boot_obs.shape[:2])

    def reanalyse(self, params, rng: jnp.ndarray, obs: jnp.ndarray, policy: jnp.ndarray) -> tuple[jnp.ndarray, dict]:
        """Fresh search policies ``[B, K+1, A]`` for the first ``reanalyze_fraction`` of the batch
        (the rest keep the stored acting policies ``policy``)."""
        bsz, width = obs.shape[:2]
        n_re = int(round(self.learner.reanalyze_fraction * bsz))
        if n_re == 0:
            return policy, {}
        out = plan(params, rng, along_data(_flat(obs[:n_re])), model=self.model, config=self.planner)
        fresh = out.action_weights.reshape(n_re, width, -1)
        spread = root_diagnostics(out)["search/root_q_spread"]
        metrics = {"search/reanalyze_root_value": jnp.mean(out.root_value), "search/reanalyze_q_spread": jnp.mean(spread)}
        return jnp.concatenate([fresh, policy[n_re:]], axis=0), metrics

    def assemble(self, replay: replay_lib.ReplayState, window: replay_lib.Window, plan_: targets_lib.TargetPlan,
                 obs: jnp.ndarray, boot_values: jnp.ndarray, policy: jnp.ndarray) -> TrainBatch:
        """The loss's inputs from the stages' outputs (with ``consistency_targets="swept"``, the
        stored consistency targets gathered from ``replay``)."""
        k_max = self.learner.unroll_steps
        batch = TrainBatch(
            obs=obs,
            action=window.action[:, :k_max],
            value=targets_lib.value_targets(plan_, boot_values),
            value_mask=plan_.value_mask.astype(jnp.float32),
            reward=plan_.value_prefix if self.model.value_prefix else plan_.reward,
            reward_mask=plan_.reward_mask.astype(jnp.float32),
            policy=policy,
            policy_mask=plan_.in_episode.astype(jnp.float32),
            weight=window.weight,
        )
        if self.learner.consistency_targets == "swept":
            batch = batch._replace(**self.stored_consistency(replay, window))
        return batch

    def stored_bootstrap(self, replay: replay_lib.ReplayState, window: replay_lib.Window,
                         plan_: targets_lib.TargetPlan) -> jnp.ndarray:
        """``reanalyze="sweep"``: the stored values ``[B, K+1]`` at the bootstrap positions."""
        return replay_lib._gather(replay.value, window.env, window.start[:, None] + plan_.bootstrap_index)

    def stored_consistency(self, replay: replay_lib.ReplayState, window: replay_lib.Window) -> dict:
        """``consistency_targets="swept"``: the stored projections ``[B, K, P]`` of unroll
        positions 1..K and a mask of those a sweep has written since they were stored."""
        positions = window.start[:, None] + jnp.arange(1, self.learner.unroll_steps + 1)[None, :]
        version = replay_lib._gather(replay.version, window.env, positions)
        return {"consistency_target": replay_lib._gather(replay.projection, window.env, positions),
                "consistency_mask": (version >= 0).astype(jnp.float32)}

    def make_batch(self, params, target_params, replay: replay_lib.ReplayState, rng: jnp.ndarray,
                   beta: jnp.ndarray) -> tuple[TrainBatch, replay_lib.Window, dict]:
        """All batch stages. ``reanalyze="batch"``: bootstraps from ``target_params``, policies
        re-searched with the params ``reanalyze_with`` names (EfficientZero: the target params).
        ``reanalyze="sweep"``: both gathered from the replay, as the last sweep left them, and
        with ``consistency_targets="swept"`` the consistency targets too."""
        sample_rng, search_rng = jax.random.split(rng)
        window = along_data(self.sample(replay, sample_rng, beta))  # the batch lies along a data mesh (if any)
        plan_ = self.targets(window)
        stored_policy = window.policy[:, : self.learner.unroll_steps + 1]
        if self.learner.reanalyze == "sweep":
            obs = self.observations(replay, window, plan_, bootstrap=False)
            boot_values, policy, metrics = self.stored_bootstrap(replay, window, plan_), stored_policy, {}
        else:
            obs = self.observations(replay, window, plan_)
            boot_values = self.bootstrap(target_params, obs.bootstrap)
            search_params = target_params if self.learner.reanalyze_with == "target" else params
            policy, metrics = self.reanalyse(search_params, search_rng, obs.unroll, stored_policy)
        metrics["train/td_steps"] = jnp.mean(plan_.td_steps.astype(jnp.float32))
        batch = along_data(self.assemble(replay, window, plan_, obs.unroll, boot_values, policy))
        metrics["search/policy_target_entropy"] = policy_entropy(batch.policy, batch.policy_mask)
        return batch, window, metrics

    # -- updates -----------------------------------------------------------------------------
    def beta(self, step: jnp.ndarray) -> jnp.ndarray:
        """Importance-weight exponent, annealed linearly to 1."""
        rc = self.replay
        progress = jnp.minimum(1.0, step.astype(jnp.float32) / rc.beta_anneal_updates)
        return rc.beta + (1.0 - rc.beta) * progress

    def update(self, state: TrainState, replay: replay_lib.ReplayState):
        """One update: ``(state, replay) -> (state, replay, metrics)``."""
        rng, batch_rng, aug_rng = jax.random.split(state.rng, 3)
        beta = self.beta(state.step)
        batch, window, metrics = self.make_batch(state.params, state.target_params, replay, batch_rng, beta)
        grads, priorities, loss_metrics = self.loss_and_grad(state.params, batch, aug_rng)
        state, replay = self.apply(state._replace(rng=rng), replay, grads, window, priorities)
        metrics = {
            **metrics,
            **loss_metrics,
            "train/grad_norm": optax.tree.norm(grads),
            "train/learning_rate": learning_rate_schedule(self.learner)(state.step - 1),
            "train/priority_mean": jnp.mean(priorities),
            "train/beta": beta,
        }
        return state, replay, metrics

    def loss_and_grad(self, params, batch: TrainBatch, rng: jnp.ndarray):
        """Augments image batches, then ``(grads, priorities [B], loss metrics)``."""
        lc = self.learner
        if lc.augment and len(self.model.observation_shape) == 3:
            batch = batch._replace(obs=augment_branches(rng, batch.obs))
        (_, (metrics, priorities)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, self.model, batch, lc)
        return grads, priorities, metrics

    def apply(self, state: TrainState, replay: replay_lib.ReplayState, grads, window: replay_lib.Window,
              priorities: jnp.ndarray):
        """The optimiser step, the per-update target refresh (``reanalyze="batch"``; a sweep
        refreshes once per train call) and the new priorities of the sampled positions."""
        lc = self.learner
        updates, opt_state = make_optimizer(lc).update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        target_params = state.target_params
        if lc.reanalyze != "sweep":
            refresh = step % lc.target_update_interval == 0
            target_params = jax.tree_util.tree_map(lambda new, old: jnp.where(refresh, new, old), params,
                                                   target_params)
        replay = replay_lib.update_priorities(replay, window.env, window.start, priorities, self.replay.priority_eps)
        return TrainState(params, target_params, opt_state, step, state.rng), replay

    def train(self, state: TrainState, replay: replay_lib.ReplayState):
        """``updates_per_call`` updates scanned: ``(state, replay) -> (state, replay, mean metrics)``."""

        def body(carry, _):
            s, r = carry
            s, r, m = self.update(s, r)
            return (s, r), m

        (state, replay), metrics = jax.lax.scan(body, (state, replay), None, length=self.learner.updates_per_call)
        metrics = jax.tree_util.tree_map(jnp.mean, metrics)
        if self.learner.reanalyze == "sweep":
            refresh = in_lockstep(state.step % self.learner.target_update_interval == 0)
            state, replay = jax.lax.cond(refresh, self.refresh, lambda s, r: (s, r), state, replay)
        return state, replay, metrics

    def refresh(self, state: TrainState, replay: replay_lib.ReplayState):
        """``reanalyze="sweep"``: new target params, then a sweep of the replay with them."""
        rng, sweep_rng = jax.random.split(state.rng)
        version = state.step // self.learner.target_update_interval
        replay, _ = self.sweep(state.params, replay, sweep_rng, version)
        return state._replace(target_params=jax.tree_util.tree_map(jnp.copy, state.params), rng=rng), replay

    def sweep(self, params, replay: replay_lib.ReplayState, rng: jnp.ndarray, version) -> tuple:
        """Re-plans the whole replay with ``params`` (see :mod:`dreamer.reanalyze`)."""
        lc = self.learner
        return reanalyze.sweep(params, replay, rng, version, model=self.model, planner=self.planner,
                               frame_stack=self.replay.frame_stack, td_steps=lc.td_steps, td_age_step=lc.td_age_step,
                               priority_eps=self.replay.priority_eps, chunk=lc.sweep_chunk, fraction=lc.sweep_fraction)
