"""Where the time (and the FLOPs) of one training update go, component by component.

For each preset (``atari100k``: pUCT, 50 simulations; ``atari100k-gumbel``: Gumbel, 16)
one update of ``dreamer.learner.make_update_fn`` is split into the pieces it runs, each
jitted on its own with the real shapes, mirroring ``make_batch`` / ``make_update_fn``
call for call:

a. **sample**: ``replay.sample`` (priorities, cdf, stratified draws, window gathers),
   ``targets.plan_targets`` (n-step indices, masks, reward sums) and the frame stacking of
   the ``B x (K+1)`` unroll and ``B x (K+1)`` bootstrap observations;
b. **bootstrap**: ``model.initial_inference`` with the *target* params on the ``B (K+1)``
   bootstrap observations, and ``targets.value_targets``;
c. **reanalyse**: ``planner.plan`` with the current params on the ``n_re (K+1)`` unroll
   observations of the first ``reanalyze_fraction`` of the batch (the preset's search and
   simulations, root noise on), and the new policy targets;
d. **loss_grad**: augmentation (if the preset has it) and ``losses.loss_fn`` under
   ``jax.value_and_grad``;
e. **apply**: optax update (clip, SGD/AdamW), target refresh, ``replay.update_priorities``;

and the whole update (``make_update_fn``) for comparison.

**FLOPs** come from XLA's cost analysis of the compiled programs
(``jax.jit(f).lower(*shapes).compile().cost_analysis()``): compiling needs shapes only,
so the *full-size* presets are analysed on a CPU without running anything. XLA counts the
body of a while loop once, whatever its trip count, so loops are handled here:

* the loss's ``lax.scan`` over the ``K`` unroll steps (and its transpose) is fully
  unrolled while lowering (``jax.lax.scan`` is wrapped with ``unroll=True`` at trace
  time; ``losses.py`` calls it by attribute);
* mctx's simulation loop (``fori_loop`` over ``num_simulations``, passed in as
  ``loop_fn``) is lowered twice, with ``unroll=1`` and ``unroll=2``: the difference is one
  simulation's cost, and ``total = f(1) + (S - 1) * (f(2) - f(1))``. Inside a simulation
  mctx walks the tree with data-dependent ``while_loop``s (selection down, backup up);
  those are counted once per simulation. They hold no network, only gathers / scatters,
  so their FLOPs are negligible, but their *bytes accessed* are undercounted by the
  tree depth. The whole update is corrected with the same per-simulation delta.

The programs that are *timed* are the library's, unpatched.

**Times** (``--scale`` on a CPU): after a warm-up (compile) call of each program, rounds
in which every program is called once (round-robin, so load from other jobs falls on all
alike); the median per program, each call ending in ``block_until_ready``. ``--scale`` applies exactly ``throughput.py``'s size
overrides (imported from it). Without ``--scale`` the full presets are timed (for a GPU).

**Floors**: per update and per game (``replay_ratio * (100k - min_size) + extra_updates``
= 118k updates), full-size FLOPs divided by an H100's 989 TFLOP/s (dense bf16 tensor
cores) and by ~60 TFLOP/s (fp32 without tensor cores). These are FLOP floors, not
measurements: the search is latency-bound on a GPU, see the README.

Usage::

    python benchmarks/profile_update.py --scale            # full-size FLOPs + CPU timing at --scale, both presets
    python benchmarks/profile_update.py --scale --no-full  # only the scaled analysis and timing
    python benchmarks/profile_update.py                    # full size, FLOPs and timing (meant for a GPU)

Prints a table per preset and writes ``benchmarks/results/profile_update_<tag>.json``
(tag: ``cpu`` or the GPU kind, ``_scaled`` with ``--scale``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import mctx
import numpy as np
import optax

from agents.efficientzero.presets import get_preset
from benchmarks.harness import RESULTS, device_tag, git_commit, machine, time_stats, write_result
from benchmarks.throughput import apply_overrides, randomize_heads, scale_overrides
from dreamer import replay as replay_lib
from dreamer import targets as targets_lib
from dreamer.augment import augment
from dreamer.config import Config, to_dict
from dreamer.learner import (
    TrainState,
    init_train_state,
    learning_rate_schedule,
    make_optimizer,
    make_update_fn,
    reanalyze_config,
)
from dreamer.losses import TrainBatch, loss_fn
from dreamer.networks import LearnedModel
from dreamer.planner import plan

PRESETS = ("atari100k", "atari100k-gumbel")
FULL_RUN_AGENT_STEPS = 100_000
H100_BF16_DENSE = 989e12  # FLOP/s, H100 SXM dense bf16 tensor cores (spec sheet)
H100_FP32 = 60e12  # FLOP/s, ~67 spec for H100 SXM fp32 without tensor cores; rounded down
COMPONENTS = ("sample", "bootstrap", "reanalyse", "loss_grad", "apply")
LABELS = {
    "sample": "(a) sample + n-step targets + frame stack",
    "bootstrap": "(b) bootstrap values (target params)",
    "reanalyse": "(c) reanalysis search",
    "loss_grad": "(d) loss + gradient (+ augment)",
    "augment": "    of which augment",
    "apply": "(e) optimiser + target refresh + priorities",
    "update": "whole update (make_update_fn)",
}

warnings.filterwarnings("ignore", message="Some donated buffers were not usable")


# ---------------------------------------------------------------------------------------
# Model and inputs


def num_actions_of(cfg: Config) -> int:
    """The minimal action set of the preset's game (Breakout: 4), read from ale-py."""
    from agents.loop import make_envs

    envs = make_envs(dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, num_envs=1)), evaluation=False, seed=0)
    try:
        return int(envs.num_actions)
    finally:
        close = getattr(envs, "close", None)
        if close is not None:
            close()


def frame_shape_of(cfg: Config) -> tuple[int, int, int]:
    s = cfg.env.frame_size
    return (s, s, 1 if cfg.env.grayscale else 3)


def build_model(cfg: Config, num_actions: int) -> LearnedModel:
    fs = frame_shape_of(cfg)
    obs_shape = fs[:-1] + (fs[-1] * cfg.replay.frame_stack,)
    return LearnedModel(cfg.network, obs_shape, num_actions, jnp.uint8)


def abstract_replay(cfg: Config, num_actions: int):
    return jax.eval_shape(
        lambda: replay_lib.init(cfg.env.num_envs, cfg.replay.capacity, frame_shape_of(cfg), jnp.uint8, num_actions)
    )


def random_replay(cfg: Config, num_actions: int, seed: int = 1) -> replay_lib.ReplayState:
    """A replay holding ``ceil(min_size / num_envs)`` steps per env of random data (as
    throughput.py's pre-fill: uniform frames, random actions, rewards in {-1, 0, 1}, 0.5%
    terminals, random policies), the rest of the ring empty (priority 0)."""
    n = cfg.env.num_envs
    length = cfg.replay.capacity // n
    t = min(-(-cfg.replay.min_size // n), length)
    rng = np.random.default_rng(seed)
    fs = frame_shape_of(cfg)
    frame = np.zeros((n, length, *fs), np.uint8)
    frame[:, :t] = rng.integers(0, 256, (n, t, *fs), dtype=np.uint8)
    action = np.zeros((n, length), np.int32)
    action[:, :t] = rng.integers(0, num_actions, (n, t))
    reward = np.zeros((n, length), np.float32)
    reward[:, :t] = rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), (n, t), p=[0.05, 0.85, 0.10])
    terminal = np.zeros((n, length), bool)
    terminal[:, :t] = rng.random((n, t)) < 0.005
    first = np.zeros((n, length), bool)
    first[:, 0] = True
    first[:, 1:t] = terminal[:, : t - 1]
    logits = rng.normal(size=(n, length, num_actions))
    policy = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    policy[:, t:] = 0.0
    value = np.zeros((n, length), np.float32)
    value[:, :t] = rng.normal(size=(n, t))
    priority = np.zeros((n, length), np.float32)
    priority[:, :t] = 1.0
    return replay_lib.ReplayState(
        frame=jnp.asarray(frame), action=jnp.asarray(action), reward=jnp.asarray(reward),
        terminal=jnp.asarray(terminal), truncated=jnp.zeros((n, length), bool), first=jnp.asarray(first),
        policy=jnp.asarray(policy), value=jnp.asarray(value), priority=jnp.asarray(priority),
        t=jnp.asarray(t, jnp.int32), max_priority=jnp.ones((), jnp.float32),
    )


# ---------------------------------------------------------------------------------------
# The components of one update (mirroring dreamer.learner.make_batch / make_update_fn)


class Components:
    def __init__(self, model: LearnedModel, cfg: Config):
        self.model, self.cfg = model, cfg
        lc, rc = cfg.learner, cfg.replay
        self.k, self.bsz = lc.unroll_steps, rc.batch_size
        self.n_re = int(round(lc.reanalyze_fraction * self.bsz))
        self.optimizer = make_optimizer(lc)
        self.augment = bool(lc.augment and len(model.observation_shape) == 3)

    def sample(self, replay, rng, beta):
        """(a) ``replay.sample`` + ``plan_targets`` + frame stacks of unroll and bootstrap positions."""
        lc, rc, k = self.cfg.learner, self.cfg.replay, self.k
        width = k + lc.td_steps + 1
        window = replay_lib.sample(replay, rng, self.bsz, width, alpha=rc.alpha, beta=beta)
        tp = targets_lib.plan_targets(
            window, unroll_steps=k, td_steps=lc.td_steps, td_age_step=lc.td_age_step,
            discount=self.cfg.planner.discount, prefix_horizon=self.cfg.planner.value_prefix_horizon,
        )
        positions = window.start[:, None] + jnp.arange(k + 1)[None, :]
        obs = replay_lib.stacked_frames(replay, window.env, positions, rc.frame_stack)
        boot_obs = replay_lib.stacked_frames(replay, window.env, window.start[:, None] + tp.bootstrap_index, rc.frame_stack)
        return window, tp, obs, boot_obs

    def bootstrap(self, target_params, tp, boot_obs):
        """(b) target-param values at the bootstrap observations -> n-step value targets."""
        flat = boot_obs.reshape((-1, *boot_obs.shape[2:]))
        boot_values = self.model.initial_inference(target_params, flat).value.reshape(self.bsz, self.k + 1)
        return targets_lib.value_targets(tp, boot_values)

    def reanalyse(self, params, rng, obs, old_policy):
        """(c) search from the ``n_re (K+1)`` unroll observations -> policy targets ``[B, K+1, A]``."""
        n_re, k = self.n_re, self.k
        policy = old_policy[:, : k + 1]
        if n_re == 0:
            return policy, jnp.zeros(())
        roots = obs[:n_re].reshape((-1, *obs.shape[2:]))
        out = plan(params, rng, roots, model=self.model, config=reanalyze_config(self.cfg))
        fresh = out.action_weights.reshape(n_re, k + 1, -1)
        return jnp.concatenate([fresh, policy[n_re:]], axis=0), jnp.mean(out.root_value)

    def make_train_batch(self, window, tp, obs, value, policy) -> TrainBatch:
        return TrainBatch(
            obs=obs, action=window.action[:, : self.k], value=value,
            value_mask=tp.value_mask.astype(jnp.float32),
            reward=tp.value_prefix if self.model.value_prefix else tp.reward,
            reward_mask=tp.reward_mask.astype(jnp.float32), policy=policy,
            policy_mask=tp.in_episode.astype(jnp.float32), weight=window.weight,
        )

    def augment_only(self, rng, obs):
        return augment(rng, obs)

    def loss_grad(self, params, batch: TrainBatch, aug_rng):
        """(d) augmentation (if any) + ``loss_fn`` under ``value_and_grad``."""
        if self.augment:
            batch = batch._replace(obs=augment(aug_rng, batch.obs))
        grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
        (loss, (metrics, priorities)), grads = grad_fn(
            params, self.model, batch, self.cfg.learner, self.cfg.planner.value_prefix_horizon
        )
        return loss, priorities, grads

    def apply(self, state: TrainState, replay, grads, env, start, priorities):
        """(e) optimiser, target refresh, new priorities (as make_update_fn)."""
        lc, rc = self.cfg.learner, self.cfg.replay
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        step = state.step + 1
        refresh = step % lc.target_update_interval == 0
        target_params = jax.tree_util.tree_map(lambda new, old: jnp.where(refresh, new, old), params, state.target_params)
        replay = replay_lib.update_priorities(replay, env, start, priorities, rc.priority_eps)
        metrics = {"grad_norm": optax.global_norm(grads), "lr": learning_rate_schedule(lc)(state.step)}
        return TrainState(params, target_params, opt_state, step, state.rng), replay, metrics


# ---------------------------------------------------------------------------------------
# Cost analysis with loops counted


@contextlib.contextmanager
def loops_unrolled(search_unroll: int):
    """At trace time: ``jax.lax.scan`` fully unrolled (the loss's unroll scan) and mctx's
    simulation loop unrolled ``search_unroll`` times. Nothing else changes."""
    orig_scan = jax.lax.scan
    orig_policies = mctx.muzero_policy, mctx.gumbel_muzero_policy

    def scan(f, init, xs=None, length=None, reverse=False, unroll=1, **kw):
        return orig_scan(f, init, xs, length, reverse=reverse, unroll=True, **kw)

    def loop_fn(lower, upper, body, init):
        return jax.lax.fori_loop(lower, upper, body, init, unroll=search_unroll)

    jax.lax.scan = scan
    mctx.muzero_policy = functools.partial(orig_policies[0], loop_fn=loop_fn)
    mctx.gumbel_muzero_policy = functools.partial(orig_policies[1], loop_fn=loop_fn)
    try:
        yield
    finally:
        jax.lax.scan = orig_scan
        mctx.muzero_policy, mctx.gumbel_muzero_policy = orig_policies


def xla_cost(fn: Callable, args: tuple, *, search_unroll: int = 1, unroll_loops: bool = True) -> dict:
    """Lowers and compiles ``fn(*args)`` (shapes suffice) and returns XLA's flops / bytes."""
    t0 = time.perf_counter()
    ctx = loops_unrolled(search_unroll) if unroll_loops else contextlib.nullcontext()

    def fresh(*a):  # a new function object each time: jax's trace cache must not hand back another variant
        return fn(*a)

    with ctx:
        lowered = jax.jit(fresh).lower(*args)
    t1 = time.perf_counter()
    compiled = lowered.compile()
    t2 = time.perf_counter()
    ca = compiled.cost_analysis()
    if isinstance(ca, (list, tuple)):  # older jax: one dict per device
        ca = ca[0]
    return {"flops": float(ca.get("flops", 0.0)), "bytes": float(ca.get("bytes accessed", 0.0)),
            "lower_s": t1 - t0, "compile_s": t2 - t1}


def search_corrected(fn: Callable, args: tuple, sims: int) -> dict:
    """Cost of a program holding one mctx search of ``sims`` simulations, every simulation
    counted: from the costs with the simulation loop unrolled once and twice."""
    c1 = xla_cost(fn, args, search_unroll=1)
    c2 = xla_cost(fn, args, search_unroll=2)
    copies = 1 + sims % 2  # scan with unroll=2 over an odd length keeps one remainder copy outside the loop
    per_sim = {k: (c2[k] - c1[k]) / copies for k in ("flops", "bytes")}
    return {
        "flops": c1["flops"] + (sims - 1) * per_sim["flops"],
        "bytes": c1["bytes"] + (sims - 1) * per_sim["bytes"],
        "per_simulation_flops": per_sim["flops"],
        "per_simulation_bytes": per_sim["bytes"],
        "flops_outside_simulations": c1["flops"] - per_sim["flops"],
        "lower_s": c1["lower_s"] + c2["lower_s"],
        "compile_s": c1["compile_s"] + c2["compile_s"],
        "compile_s_unroll1": c1["compile_s"],
    }


def unit_costs(model: LearnedModel, params, batch: int = 64) -> dict:
    """FLOPs per sample of the network pieces (no loops inside): XLA count at ``batch`` / batch."""
    obs = jax.ShapeDtypeStruct((batch, *model.observation_shape), jnp.uint8)
    latent = jax.eval_shape(model.represent, params, obs)
    carry = jax.eval_shape(lambda: model.initial_carry(batch))
    action = jax.ShapeDtypeStruct((batch,), jnp.int32)
    pieces = {
        "represent": (model.represent, (params, obs)),
        "initial_inference": (model.initial_inference, (params, obs)),
        "recurrent_inference": (model.recurrent_inference, (params, (latent, carry), action)),
        "project_with_predictor": (lambda p, z: model.project(p, z, True), (params, latent)),
        "represent_fwd_bwd": (jax.grad(lambda p, o: jnp.sum(model.represent(p, o))), (params, obs)),
    }
    out = {}
    for name, (fn, args) in pieces.items():
        c = xla_cost(fn, args, unroll_loops=False)
        out[name] = {"mflop_per_sample": c["flops"] / batch / 1e6, "kb_per_sample": c["bytes"] / batch / 1e3}
    return out


def analyse(cfg: Config, model: LearnedModel, label: str) -> dict:
    """XLA FLOPs / bytes of every component and of the whole update, from shapes only."""
    comp = Components(model, cfg)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    state = jax.eval_shape(lambda r: init_train_state(model, cfg, r), key)
    replay = abstract_replay(cfg, model.num_actions)
    beta = jax.ShapeDtypeStruct((), jnp.float32)
    window, tp, obs, boot_obs = jax.eval_shape(comp.sample, replay, key, beta)
    value = jax.eval_shape(comp.bootstrap, state.target_params, tp, boot_obs)
    policy, _ = jax.eval_shape(comp.reanalyse, state.params, key, obs, window.policy)
    batch = jax.eval_shape(comp.make_train_batch, window, tp, obs, value, policy)
    _, priorities, grads = jax.eval_shape(comp.loss_grad, state.params, batch, key)
    sims = cfg.planner.num_simulations

    out: dict[str, Any] = {}
    print(f"  [{label}] cost analysis:", flush=True)

    def note(name, c):
        out[name] = c
        print(f"    {name:10} {c['flops'] / 1e9:12.1f} GFLOP {c['bytes'] / 1e9:10.2f} GB   "
              f"lower {c['lower_s']:5.1f} s compile {c['compile_s']:6.1f} s", flush=True)

    note("sample", xla_cost(comp.sample, (replay, key, beta)))
    note("bootstrap", xla_cost(comp.bootstrap, (state.target_params, tp, boot_obs)))
    if comp.n_re > 0:
        note("reanalyse", search_corrected(comp.reanalyse, (state.params, key, obs, window.policy), sims))
    else:
        note("reanalyse", xla_cost(comp.reanalyse, (state.params, key, obs, window.policy)))
    note("loss_grad", xla_cost(comp.loss_grad, (state.params, batch, key)))
    raw_loss = xla_cost(comp.loss_grad, (state.params, batch, key), unroll_loops=False)
    out["loss_grad_xla_raw_loops_once"] = {"flops": raw_loss["flops"], "bytes": raw_loss["bytes"]}
    if comp.augment:
        note("augment", xla_cost(comp.augment_only, (key, obs)))
    note("apply", xla_cost(comp.apply, (state, replay, grads, window.env, window.start, priorities)))
    # The whole update, its loss scan unrolled and the simulation loop once; every other
    # simulation added from the reanalysis delta (the same search body is in it).
    update = make_update_fn(model, cfg)
    whole = xla_cost(update, (state, replay))
    if comp.n_re > 0:
        whole["flops_simulation_loop_once"] = whole["flops"]
        whole["flops"] += (sims - 1) * out["reanalyse"]["per_simulation_flops"]
        whole["bytes"] += (sims - 1) * out["reanalyse"]["per_simulation_bytes"]
    note("update", whole)
    # For reference: what XLA reports with the loops left as they are (bodies counted once).
    raw = xla_cost(update, (state, replay), unroll_loops=False)
    out["update_xla_raw_loops_once"] = {"flops": raw["flops"], "bytes": raw["bytes"], "compile_s": raw["compile_s"]}
    print(f"    (whole update as XLA reports it, loop bodies once: {raw['flops'] / 1e9:.1f} GFLOP)", flush=True)
    # Acting, for reference: one act call (one search over num_envs observations) per vector step.
    n = cfg.env.num_envs
    act_obs = jax.ShapeDtypeStruct((n, *model.observation_shape), jnp.uint8)
    act = search_corrected(
        lambda p, r, o: plan(p, r, o, model=model, config=cfg.planner).action_weights, (state.params, key, act_obs), sims
    )
    out["act_per_vector_step"] = act
    out["units"] = unit_costs(model, state.params)
    out["shapes"] = {
        "batch": comp.bsz, "unroll_steps": comp.k, "reanalysed_rows": comp.n_re,
        "search_roots": comp.n_re * (comp.k + 1), "bootstrap_observations": comp.bsz * (comp.k + 1),
        "observation": list(model.observation_shape), "num_actions": model.num_actions, "simulations": sims,
        "search": cfg.planner.search, "augment": comp.augment,
    }
    return out


# ---------------------------------------------------------------------------------------
# Timing


def time_components(cfg: Config, model: LearnedModel, reps: tuple) -> dict:
    comp = Components(model, cfg)
    key = jax.random.PRNGKey(0)
    state = jax.jit(lambda r: init_train_state(model, cfg, r))(key)
    # Fresh heads are zero-initialised (every value and logit exactly 0, balanced trees);
    # re-drawn at random as in search_speed.py / throughput.py so the search sees noisy values.
    params = randomize_heads(state.params, jax.random.PRNGKey(12), 1.0)
    state = state._replace(params=params, target_params=jax.tree_util.tree_map(jnp.copy, params))
    replay = random_replay(cfg, model.num_actions)
    beta = jnp.float32(cfg.replay.beta)
    k_sample, k_search, k_aug = jax.random.split(jax.random.PRNGKey(3), 3)

    jits = {
        "sample": jax.jit(comp.sample),
        "bootstrap": jax.jit(comp.bootstrap),
        "reanalyse": jax.jit(comp.reanalyse),
        "loss_grad": jax.jit(comp.loss_grad),
        "augment": jax.jit(comp.augment_only),
        "apply": jax.jit(comp.apply, donate_argnums=(0, 1)),
    }
    window, tp, obs, boot_obs = jax.block_until_ready(jits["sample"](replay, k_sample, beta))
    value = jits["bootstrap"](state.target_params, tp, boot_obs)
    policy, _ = jits["reanalyse"](state.params, k_search, obs, window.policy)
    batch = jax.block_until_ready(comp.make_train_batch(window, tp, obs, value, policy))
    loss, priorities, grads = jax.block_until_ready(jits["loss_grad"](state.params, batch, k_aug))

    box = {"state": jax.tree_util.tree_map(jnp.copy, state), "replay": jax.tree_util.tree_map(jnp.copy, replay)}

    def run_apply():
        box["state"], box["replay"], m = jits["apply"](box["state"], box["replay"], grads, window.env, window.start, priorities)
        jax.block_until_ready((box["state"], box["replay"], m))

    calls = {
        "sample": lambda: jax.block_until_ready(jits["sample"](replay, k_sample, beta)),
        "bootstrap": lambda: jax.block_until_ready(jits["bootstrap"](state.target_params, tp, boot_obs)),
        "reanalyse": lambda: jax.block_until_ready(jits["reanalyse"](state.params, k_search, obs, window.policy)),
        "loss_grad": lambda: jax.block_until_ready(jits["loss_grad"](state.params, batch, k_aug)),
        "apply": run_apply,
    }
    if comp.augment:
        calls["augment"] = lambda: jax.block_until_ready(jits["augment"](k_aug, obs))

    update = jax.jit(make_update_fn(model, cfg), donate_argnums=(0, 1))
    wbox = {"state": jax.tree_util.tree_map(jnp.copy, state), "replay": jax.tree_util.tree_map(jnp.copy, replay)}

    def run_update():
        wbox["state"], wbox["replay"], m = update(wbox["state"], wbox["replay"])
        jax.block_until_ready((wbox["state"], wbox["replay"], m))

    calls["update"] = run_update

    # Warm-up (compile) each, then round-robin: every round times each program once, so
    # load from other jobs on a shared machine falls on all of them alike.
    first = {}
    for name, call in calls.items():
        t0 = time.perf_counter()
        call()
        first[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in calls}
    t_start = time.perf_counter()
    rounds = 0
    while rounds < reps[0] or (rounds < reps[1] and time.perf_counter() - t_start < reps[2]):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            times[name].append(time.perf_counter() - t0)
        rounds += 1
    out = {}
    print(f"  timing (median ms over {rounds} round-robin rounds):", flush=True)
    for name in calls:
        s = time_stats(times[name])
        out[name] = {"ms": 1e3 * s["median_s"], "first_call_s": first[name], **s}
        print(f"    {name:10} {out[name]['ms']:9.1f} ms  (min {1e3 * s['min_s']:.1f}, max {1e3 * s['max_s']:.1f}; "
              f"first call {first[name]:.1f} s)", flush=True)
    out["loss_finite"] = bool(np.isfinite(float(loss)))
    return out


# ---------------------------------------------------------------------------------------
# One preset


def full_run_updates(cfg: Config) -> int:
    lp = cfg.loop
    return int(lp.replay_ratio * (FULL_RUN_AGENT_STEPS - cfg.replay.min_size)) + lp.extra_updates


def floors(costs: dict, cfg: Config) -> dict:
    upd = costs["update"]["flops"]
    n_updates = full_run_updates(cfg)
    act = costs["act_per_vector_step"]["flops"]
    act_calls = FULL_RUN_AGENT_STEPS // cfg.env.num_envs
    game = upd * n_updates + act * act_calls
    return {
        "what": "FLOP floors (FLOPs / peak rate), not measurements",
        "bytes_note": ("no bandwidth floor is given: XLA's 'bytes accessed' counts the whole operand of every gather / "
                       "scatter (replay frames, search tree) and of pass-through copies, so it is far above real traffic"),
        "update_tflop": upd / 1e12,
        "updates_per_game": n_updates,
        "act_calls_per_game": act_calls,
        "act_tflop_per_game": act * act_calls / 1e12,
        "game_flop": game,
        "per_update_ms_bf16_989": 1e3 * upd / H100_BF16_DENSE,
        "per_update_ms_fp32_60": 1e3 * upd / H100_FP32,
        "per_game_min_bf16_989": game / H100_BF16_DENSE / 60,
        "per_game_min_fp32_60": game / H100_FP32 / 60,
        "budget_30min_per_update_ms": 1800e3 / n_updates,
        "sustained_tflops_needed_for_30min": game / 1800 / 1e12,
    }


def table_rows(costs: dict | None, timing: dict | None) -> list[dict]:
    names = list(COMPONENTS)
    if (costs and "augment" in costs) or (timing and "augment" in timing):
        names.insert(names.index("loss_grad") + 1, "augment")
    total_flops = costs["update"]["flops"] if costs else None
    total_ms = timing["update"]["ms"] if timing else None
    sum_ms = sum(timing[n]["ms"] for n in COMPONENTS) if timing else None
    rows = []
    for n in names + ["update"]:
        r = {"component": n, "label": LABELS[n]}
        if costs:
            r["gflop"] = costs[n]["flops"] / 1e9
            r["flop_share"] = costs[n]["flops"] / total_flops
        if timing:
            r["ms"] = timing[n]["ms"]
            r["time_share_of_components"] = timing[n]["ms"] / sum_ms
            r["time_share_of_update"] = timing[n]["ms"] / total_ms
        rows.append(r)
    if costs:
        rows.append({"component": "sum_of_components", "label": "sum of (a)-(e)",
                     "gflop": sum(costs[n]["flops"] for n in COMPONENTS) / 1e9,
                     **({"ms": sum_ms} if timing else {})})
    return rows


def print_table(name: str, rows: list[dict], flop_size: str, time_size: str | None, timed_flops: dict | None) -> None:
    print(f"\n{name}: GFLOP at {flop_size} size; time at {time_size or '-'} size"
          + (" (FLOP share at the timed size in brackets)" if timed_flops else ""))
    head = f"{'component':46} {'GFLOP/update':>13} {'FLOP %':>7} {'ms':>9} {'time %':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        g = f"{r['gflop']:13.1f}" if "gflop" in r else f"{'':>13}"
        fs = f"{100 * r['flop_share']:6.1f}%" if "flop_share" in r else f"{'':>7}"
        ms = f"{r['ms']:9.1f}" if "ms" in r else f"{'':>9}"
        ts = f"{100 * r['time_share_of_update']:6.1f}%" if "time_share_of_update" in r else f"{'':>7}"
        extra = ""
        if timed_flops and r["component"] in timed_flops:
            extra = f"  [{100 * timed_flops[r['component']]['flops'] / timed_flops['update']['flops']:.1f}%]"
        print(f"{r['label']:46} {g} {fs} {ms} {ts}{extra}")


def run_preset(name: str, args) -> dict:
    base = get_preset(name)
    overrides = scale_overrides(base) if args.scale else {}
    cfg = apply_overrides(base, overrides) if overrides else base
    print(f"\n=== {name}{' (timed at --scale)' if args.scale else ''} ===", flush=True)
    for k, v in overrides.items():
        print(f"  override {k} = {v!r}")
    num_actions = args.num_actions or num_actions_of(base)
    full_model = build_model(base, num_actions)
    model = build_model(cfg, num_actions)
    print(f"  {base.env.id}: {num_actions} actions; full obs {full_model.observation_shape}, timed obs {model.observation_shape}",
          flush=True)
    t0 = time.perf_counter()
    full_costs = analyse(base, full_model, "full size") if not args.no_full else None
    scaled_costs = analyse(cfg, model, "scaled") if args.scale else None
    timing = None
    if not args.no_timing:
        timing = time_components(cfg, model, (args.rounds, 3 * args.rounds, args.target_s))
    ref = full_costs or scaled_costs
    rows = table_rows(ref, timing)
    print_table(name, rows, "full" if full_costs else "scaled", ("scaled" if args.scale else "full") if timing else None,
                scaled_costs if (full_costs and scaled_costs and timing) else None)
    fl = floors(full_costs, base) if full_costs else None
    if fl:
        print(f"  FLOP floor (full size, H100): {fl['update_tflop']:.2f} TFLOP/update -> "
              f"{fl['per_update_ms_bf16_989']:.2f} ms at 989 TFLOP/s bf16, {fl['per_update_ms_fp32_60']:.1f} ms at 60 TFLOP/s fp32; "
              f"per game ({fl['updates_per_game']} updates + acting {fl['act_tflop_per_game']:.0f} TFLOP): "
              f"{fl['game_flop']:.2e} FLOP -> {fl['per_game_min_bf16_989']:.1f} min bf16, {fl['per_game_min_fp32_60']:.0f} min fp32; "
              f"30 min needs {fl['sustained_tflops_needed_for_30min']:.0f} TFLOP/s sustained", flush=True)
    achieved = None
    if scaled_costs and timing:
        achieved = {n: scaled_costs[n]["flops"] / (timing[n]["ms"] / 1e3) / 1e9 for n in list(COMPONENTS) + ["update"]
                    if n in timing}
        print("  achieved GFLOP/s on this machine at the timed size: "
              + ", ".join(f"{n} {v:.1f}" for n, v in achieved.items()), flush=True)
    return {
        "preset": name,
        "game": base.env.id,
        "num_actions": num_actions,
        "scale_overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "config_full": to_dict(base),
        "config_timed": to_dict(cfg),
        "flops_full": full_costs,
        "flops_timed_size": scaled_costs,
        "timing_ms": timing,
        "table": rows,
        "table_note": ("gflop / flop_share: full-size XLA cost analysis (loops counted, see module doc); ms / time shares: "
                       "median wall time at the timed size (--scale) on this machine"),
        "achieved_gflops_timed_size": achieved,
        "floors_full": fl,
        "preset_total_s": time.perf_counter() - t0,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Profile of one training update: XLA FLOPs per component and timings.")
    parser.add_argument("--preset", action="append", choices=PRESETS, help="repeatable; default both")
    parser.add_argument("--scale", action="store_true", help="time (and also analyse) throughput.py's shrunken sizes")
    parser.add_argument("--no-full", action="store_true", help="skip the full-size cost analysis")
    parser.add_argument("--no-timing", action="store_true", help="cost analysis only")
    parser.add_argument("--num-actions", type=int, default=None, help="default: the game's minimal action set")
    parser.add_argument("--rounds", type=int, default=10, help="round-robin timing rounds (at least; up to 3x while under --target-s)")
    parser.add_argument("--target-s", type=float, default=20.0, help="seconds of timing rounds per preset")
    parser.add_argument("--tag", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    presets = tuple(dict.fromkeys(args.preset)) if args.preset else PRESETS
    tag = args.tag or device_tag() + ("_scaled" if args.scale else "")
    out_path = args.out or RESULTS / f"profile_update_{tag}.json"
    started = time.perf_counter()
    info, commit = machine(), git_commit()
    print(f"jax {info['jax']} on {info['device']} ({info['cpu_count']} CPUs), commit {commit}, "
          f"load average {info['load_average']}")
    results = [run_preset(p, args) for p in presets]
    result = {
        "benchmark": "profile_update",
        "tag": tag,
        "device": info["device"],
        "jax": info["jax"],
        "commit": commit,  # at the start (git rev-parse --short HEAD, "-dirty" with tracked changes)
        "commit_at_end": git_commit(),
        "scale": bool(args.scale),
        "machine": info,
        "method": {
            "flops": ("XLA cost_analysis() of each component jitted alone with the real shapes (lowered and compiled, "
                      "not run); loss scan fully unrolled at trace time; mctx simulation loop lowered with unroll 1 and 2, "
                      "total = f1 + (S-1)(f2-f1); tree walks inside a simulation (data-dependent while loops, no network) "
                      "counted once per simulation, so their bytes are undercounted"),
            "timing": ("median of >= 3 calls after a warm-up call, each ending in block_until_ready; the library's "
                       "programs, unpatched; random replay pre-filled to min_size; heads re-drawn at random"),
            "h100_rates": {"bf16_dense_flops": H100_BF16_DENSE, "fp32_flops": H100_FP32},
            "bytes": ("XLA 'bytes accessed' (CPU compile) is kept per component for reference only: it counts whole "
                      "operands of gathers / scatters and pass-through copies, so it is not a traffic estimate"),
        },
        "presets": results,
        "total_s": time.perf_counter() - started,
    }
    print()
    write_result(out_path, result)
    print(f"total {result['total_s']:.0f} s")
    return result


if __name__ == "__main__":
    main()
