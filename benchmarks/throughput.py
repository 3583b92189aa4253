"""Throughput of the Atari-100k training loop, piece by piece and as a whole.

For each preset (``atari100k``: pUCT, 50 simulations; ``atari100k-gumbel``: Gumbel, 16
simulations) this builds one :class:`agents.loop.Trainer` (its training envs, its jitted
act / replay-add / train programs, its train state and replay) and measures, apart:

1. **env**: agent steps/s of the training vector env alone (``agents.loop.make_envs``,
   ale-py), random actions, one ``step`` plus the acting frame stack per vector step;
2. **act**: latency of the jitted act program (one batched search over ``num_envs``
   observations) per vector step, with the observations already on the device and
   ``block_until_ready``; and the same with the loop's host transfers (numpy
   observations in, ``np.asarray(action)`` out);
3. **train**: updates/s of the jitted train program (sample, reanalysis, targets, loss,
   optimiser, priorities; ``updates_per_call`` updates scanned per call) on a replay
   pre-filled with ``min_size``+ transitions of random frames, actions and rewards written
   by the jitted ``replay.add``;
4. **loop**: agent steps/s of the real ``Trainer.run()`` at the preset's replay ratio,
   over a short budget that starts with the replay at ``min_size`` (the pre-filled one),
   every program already compiled. Steady state is timed from the loop's own env steps
   (the env is wrapped to time-stamp each ``step``), so the ``reset`` at the start and the
   owed updates at the end are left out. Evaluation and checkpointing are switched off
   for this segment (a full run pays them on top).

Compile times are reported apart: first call minus the steady-state median.

From these it projects the wall-clock of a full run: 100k agent steps and
``replay_ratio * (100k - min_size) + extra_updates`` updates (118k for both presets),
evaluation excluded, in two ways: *sequential* (env + act + add for every vector step,
plus every update at the measured updates/s, no overlap) and *measured loop* (the
``min_size`` steps before training at env + act + add, the rest at the measured loop
rate, then ``extra_updates`` at the measured updates/s).

``--scale`` shrinks the preset so that it runs on a small CPU in a minute or two per
preset (frames 64x64 gray, 16 channels, batch 16, a quarter of the simulations, replay
capacity 8,000; the overrides are printed and stored in the JSON). Without it the full
preset runs (meant for a GPU).

``--bf16`` runs everything with the library's compute-dtype option
``NetworkConfig.dtype="bfloat16"`` (parameters stay float32 and are cast inside each
layer; network outputs are cast back to float32) and adds a float32-vs-bfloat16
comparison of the network alone: time and numeric differences of ``initial_inference``,
``recurrent_inference`` and the training loss (+ gradient) on one sampled batch, with
head layers re-drawn at random (fresh heads are zero-initialised, so every output would
be exactly 0 in both dtypes).

Usage::

    python benchmarks/throughput.py --scale              # both presets, ~1-2 min each on a 2-core CPU
    python benchmarks/throughput.py                      # full presets (GPU)
    python benchmarks/throughput.py --preset atari100k --bf16

Prints a table and writes ``benchmarks/results/throughput_<tag>.json`` (tag: ``cpu`` or
the GPU kind, ``_scaled`` with ``--scale``, ``_bf16`` with ``--bf16``).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from agents.efficientzero.presets import get_preset
from agents.loop import Trainer, current_obs
from benchmarks.harness import RESULTS, CompileLog, device_tag, git_commit, machine, time_calls, write_result
from dreamer import replay as replay_lib
from dreamer.config import Config, to_dict
from dreamer.learner import make_batch
from dreamer.losses import loss_fn
from dreamer.networks import LearnedModel

PRESETS = ("atari100k", "atari100k-gumbel")
FULL_RUN_AGENT_STEPS = 100_000

# Donated buffers that XLA cannot reuse (some, on a CPU) warn on every call of the donating programs.
warnings.filterwarnings("ignore", message="Some donated buffers were not usable")


# ---------------------------------------------------------------------------------------
# Configs


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """``{"network.channels": 16, ...}`` -> a new config (validated on construction)."""
    sections: dict[str, dict[str, Any]] = {}
    for key, value in overrides.items():
        section, name = key.split(".")
        sections.setdefault(section, {})[name] = value
    return dataclasses.replace(
        cfg, **{s: dataclasses.replace(getattr(cfg, s), **fields) for s, fields in sections.items()}
    )


def scale_overrides(cfg: Config) -> dict[str, Any]:
    """What ``--scale`` changes: sizes only (like the atari-debug preset), never the
    algorithm. Search kind, supports, unroll / TD steps, replay ratio, updates per call,
    reanalyse fraction and ``min_size`` stay the preset's."""
    return {
        "env.frame_size": 64,
        "env.grayscale": True,
        "network.channels": 16,
        "network.reduced_channels": 4,
        "network.head_hidden": (16,),
        "network.lstm_hidden": 32,
        "network.projection_hidden": 64,
        "network.projection_out": 64,
        "network.predictor_hidden": 32,
        "planner.num_simulations": max(4, cfg.planner.num_simulations // 4),
        "replay.capacity": 8_000,
        "replay.batch_size": 16,
    }


def loop_segment_overrides(cfg: Config, prefill_steps: int, budget: int) -> dict[str, Any]:
    """Settings of the timed loop segment that the timed code never reaches: a short
    budget starting at the pre-filled replay, no evaluation, logging or checkpointing
    inside it, few eval envs (they are created but not stepped)."""
    return {
        "loop.env_steps": prefill_steps + budget,
        "loop.extra_updates": 0,
        "loop.eval_every": 10**9,
        "loop.log_every_s": 1e9,
        "loop.checkpoint_every_s": 1e9,
        "env.num_eval_envs": 2,
        "env.eval_episodes": 2,
    }


# ---------------------------------------------------------------------------------------
# Timing helpers


class TimedEnvs:
    """Wraps the loop's vector env and time-stamps the end of every ``step``."""

    def __init__(self, envs):
        self._envs = envs
        self.step_ends: list[float] = []

    def step(self, actions):
        out = self._envs.step(actions)
        self.step_ends.append(time.perf_counter())
        return out

    def __getattr__(self, name):
        return getattr(self._envs, name)


COMPILE_LOG: CompileLog | None = None
# Counted from jax's events by name. The replay add program is not: its name, "add", is
# also the name of the eager add primitive, so it is checked by its dispatch-cache entries.
PROGRAMS = ("act", "train")


class BenchTrainer(Trainer):
    """The real loop, with evaluation and checkpoints left out of the timed segment."""

    skipped_evaluations = 0

    def run_evaluation(self) -> float:
        self.skipped_evaluations += 1
        return float("nan")

    def save(self) -> None:
        pass


def random_step_data(rng: np.random.Generator, n: int, frame_shape, num_actions: int, t: int, prev_end: np.ndarray):
    """One vector step of random transitions for ``replay.add``."""
    frame = rng.integers(0, 256, (n, *frame_shape), dtype=np.uint8)
    action = rng.integers(0, num_actions, n).astype(np.int32)
    reward = rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), n, p=[0.05, 0.85, 0.10])
    terminal = rng.random(n) < 0.005
    truncated = np.zeros(n, bool)
    first = np.ones(n, bool) if t == 0 else prev_end
    logits = rng.normal(size=(n, num_actions))
    policy = (np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)).astype(np.float32)
    value = rng.normal(size=n).astype(np.float32)
    # policy and value as device arrays, as the loop passes them (act outputs), so that the
    # add program's dispatch cache sees the same argument kinds here and in the loop
    policy, value = jax.device_put(policy), jax.device_put(value)
    return (frame, action, reward, terminal, truncated, first, policy, value), terminal | truncated


def randomize_heads(params, key: jnp.ndarray, scale: float = 1.0):
    """Re-draws every all-zero weight matrix (the zero-initialised last layers of the value,
    reward and policy heads) as ``scale * N(0, 1 / fan_in)``, as benchmarks/search_speed.py."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for k, leaf in zip(keys, leaves):
        if leaf.ndim >= 2 and not np.any(np.asarray(leaf)):
            leaf = scale * jax.random.normal(k, leaf.shape, leaf.dtype) / np.sqrt(leaf.shape[-2])
        out.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, out)


# ---------------------------------------------------------------------------------------
# The sections


def bench_env(envs, vector_steps: int, warmup: int) -> dict:
    rng = np.random.default_rng(0)
    t0 = time.perf_counter()
    frames = envs.reset()
    reset_s = time.perf_counter() - t0
    actions = rng.integers(0, envs.num_actions, (vector_steps + warmup, envs.num_envs))
    for i in range(warmup):
        frames, *_ = envs.step(actions[i])
        current_obs(envs, frames)
    t0 = time.perf_counter()
    for i in range(warmup, warmup + vector_steps):
        frames, *_ = envs.step(actions[i])
        current_obs(envs, frames)
    dt = time.perf_counter() - t0
    n = envs.num_envs
    return {
        "num_envs": n,
        "vector_steps": vector_steps,
        "reset_s": reset_s,
        "vector_step_ms": 1e3 * dt / vector_steps,
        "agent_steps_per_s": n * vector_steps / dt,
        "note": "random actions; per vector step: envs.step + the acting frame stack (current_obs)",
    }


def bench_act(trainer: Trainer, obs_np: np.ndarray, reps: tuple) -> dict:
    act, params = trainer._act, trainer.state.params
    keys = list(jax.random.split(jax.random.PRNGKey(1), 64))
    obs = jax.block_until_ready(jnp.asarray(obs_np))
    temperature = 1.0  # a Python float, as the loop passes it
    t0 = time.perf_counter()
    jax.block_until_ready(act(params, keys[0], obs, temperature))
    first = time.perf_counter() - t0
    i = [0]

    def device_call():
        i[0] += 1
        jax.block_until_ready(act(params, keys[i[0] % len(keys)], obs, temperature))

    def host_call():  # what the loop does: numpy obs in, numpy action out
        i[0] += 1
        out = act(params, keys[i[0] % len(keys)], jnp.asarray(obs_np), temperature)
        np.asarray(out.action)

    dev = time_calls(device_call, min_reps=reps[0], max_reps=reps[1], target_s=reps[2])
    host = time_calls(host_call, min_reps=reps[0], max_reps=reps[1], target_s=reps[2])
    return {
        "batch": int(obs_np.shape[0]),
        "first_call_s": first,
        "compile_s": max(first - dev["median_s"], 0.0),
        "ms": 1e3 * dev["median_s"],
        "ms_with_host_transfers": 1e3 * host["median_s"],
        "device": dev,
        "host": host,
    }


def prefill(trainer: Trainer, vector_steps: int) -> dict:
    """Writes ``vector_steps`` steps of random data into the trainer's replay with its own
    jitted ``replay.add`` (donated, so the returned replay is kept)."""
    envs, add = trainer.envs, trainer._add
    rng = np.random.default_rng(1)
    n = envs.num_envs
    end = np.ones(n, bool)
    times = []
    for t in range(vector_steps):
        args, end = random_step_data(rng, n, envs.frame_shape, envs.num_actions, t, end)
        t0 = time.perf_counter()
        trainer.replay = jax.block_until_ready(add(trainer.replay, *args))
        times.append(time.perf_counter() - t0)
    steady = float(np.median(times[1:])) if len(times) > 1 else times[0]
    return {
        "vector_steps": vector_steps,
        "transitions": vector_steps * n,
        "replay_size": int(replay_lib.size(trainer.replay)),
        "total_s": float(np.sum(times)),
        "add_first_call_s": times[0],
        "add_compile_s": max(times[0] - steady, 0.0),
        "add_ms": 1e3 * steady,
        "data": "uniform random uint8 frames, random actions, rewards in {-1, 0, 1}, 0.5% terminals, random policies and values",
    }


def bench_train(trainer: Trainer, reps: tuple) -> dict:
    per_call = trainer.cfg.learner.updates_per_call
    train = trainer._train

    def call():
        trainer.state, trainer.replay, metrics = train(trainer.state, trainer.replay)  # donated: keep the returned ones
        jax.block_until_ready((trainer.state, trainer.replay, metrics))
        return metrics

    t0 = time.perf_counter()
    metrics = call()
    first = time.perf_counter() - t0
    box = {}
    s = time_calls(lambda: box.update(m=call()), min_reps=reps[0], max_reps=reps[1], target_s=reps[2])
    loss = float(box["m"]["loss/total"])
    return {
        "updates_per_call": per_call,
        "first_call_s": first,
        "compile_s": max(first - s["median_s"], 0.0),
        "call_ms": 1e3 * s["median_s"],
        "ms_per_update": 1e3 * s["median_s"] / per_call,
        "updates_per_s": per_call / s["median_s"],
        "calls": s,
        "loss_total_last": loss,
        "loss_finite": bool(np.isfinite(loss)),
        "first_call_loss": float(metrics["loss/total"]),
    }


def bench_loop(trainer: BenchTrainer, warmup_vector_steps: int) -> dict:
    """Times the real ``Trainer.run()``; steady state from the loop's own env-step stamps."""
    c = trainer.counters
    start_steps, start_updates = c.env_steps, c.updates
    timed = TimedEnvs(trainer.envs)
    trainer.envs = timed
    t0 = time.perf_counter()
    trainer.run()
    total = time.perf_counter() - t0
    trainer.envs = timed._envs
    stamps = timed.step_ends
    n = trainer.cfg.env.num_envs
    w = min(warmup_vector_steps, max(len(stamps) - 2, 0))
    steady_steps = len(stamps) - 1 - w
    steady_s = stamps[-1] - stamps[w]
    agent_steps = c.env_steps - start_steps
    updates = c.updates - start_updates
    compiled_in_window = COMPILE_LOG.between(stamps[w], stamps[-1]) if COMPILE_LOG else None
    return {
        "agent_steps": agent_steps,
        "updates": updates,
        "replay_ratio": trainer.cfg.loop.replay_ratio,
        "run_total_s": total,
        "steady_vector_steps": steady_steps,
        "steady_s": steady_s,
        "warmup_vector_steps": w,
        "agent_steps_per_s": n * steady_steps / steady_s,
        "ms_per_vector_step": 1e3 * steady_s / steady_steps,
        "updates_per_s_in_loop": trainer.cfg.loop.replay_ratio * n * steady_steps / steady_s,
        "skipped_evaluations": trainer.skipped_evaluations,
        "compiled_during_timed_window": compiled_in_window,
        "note": (
            "Trainer.run() from a replay pre-filled to min_size, all programs compiled; steady state between "
            "the loop's env-step stamps after the warm-up steps; evaluation and checkpointing off"
        ),
    }


def bf16_comparison(cfg: Config, trainer: Trainer, fresh_params, reps: tuple) -> dict:
    """float32 vs the library's bfloat16 compute dtype, network alone, same params and inputs."""
    envs = trainer.envs
    obs_shape, obs_dtype = trainer.model.observation_shape, trainer.model.observation_dtype
    models = {
        dt: LearnedModel(dataclasses.replace(cfg.network, dtype=dt), obs_shape, envs.num_actions, obs_dtype)
        for dt in ("float32", "bfloat16")
    }
    m32 = models["float32"]
    params = randomize_heads(fresh_params, jax.random.PRNGKey(12), 1.0)
    # One training batch from the replay (targets without reanalysis: the comparison is of
    # the network, the search targets are irrelevant to it).
    batch_cfg = dataclasses.replace(cfg, learner=dataclasses.replace(cfg.learner, reanalyze_fraction=0.0))
    batch, _, _ = jax.jit(lambda p, r, k: make_batch(m32, batch_cfg, p, p, r, k, jnp.float32(1.0)))(
        params, trainer.replay, jax.random.PRNGKey(13)
    )
    flat_obs = batch.obs.reshape((-1, *batch.obs.shape[2:]))  # [B (K+1), ...]: the bootstrap batch of an update
    actions = jnp.asarray(np.random.default_rng(2).integers(0, envs.num_actions, flat_obs.shape[0]), jnp.int32)
    lc, horizon = cfg.learner, cfg.planner.value_prefix_horizon

    results: dict[str, dict] = {}
    outputs: dict[str, dict] = {}
    for dt, model in models.items():
        programs = {
            "initial_inference": (jax.jit(model.initial_inference), lambda: (params, flat_obs)),
            # from the float32 model's root states, so both dtypes step the same latents
            "recurrent_inference": (jax.jit(model.recurrent_inference),
                                    lambda: (params, outputs["float32"]["initial_inference"].state, actions)),
            "loss_and_grad": (jax.jit(jax.value_and_grad(lambda p, b, m=model: loss_fn(p, m, b, lc, horizon)[0])),
                              lambda: (params, batch)),
        }
        results[dt], outputs[dt] = {}, {}
        for name, (fn, make_args) in programs.items():
            fn_args = make_args()
            t0 = time.perf_counter()
            outputs[dt][name] = jax.block_until_ready(fn(*fn_args))
            first = time.perf_counter() - t0
            s = time_calls(lambda: fn(*fn_args), min_reps=reps[0], max_reps=reps[1], target_s=reps[2])
            results[dt][name] = {"ms": 1e3 * s["median_s"], "compile_s": max(first - s["median_s"], 0.0), "reps": s["reps"]}

    def err(a, b) -> dict:
        a = np.asarray(a, np.float64)
        b = np.asarray(b, np.float64)
        diff = np.abs(a - b)
        scale = float(np.max(np.abs(a)))
        return {"max_abs": float(diff.max()), "mean_abs": float(diff.mean()), "max_abs_ref": scale,
                "max_rel": float(diff.max() / scale) if scale > 0 else None}

    def softmax(x):
        x = np.asarray(x, np.float64)
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    o32 = {k[:4]: v for k, v in outputs["float32"].items()}  # init / recu / loss
    o16 = {k[:4]: v for k, v in outputs["bfloat16"].items()}
    loss32, grads32 = o32["loss"]
    loss16, grads16 = o16["loss"]
    g32 = jax.tree_util.tree_leaves(grads32)
    g16 = jax.tree_util.tree_leaves(grads16)
    gnorm32 = float(np.sqrt(sum(float(jnp.sum(jnp.square(g))) for g in g32)))
    gdiff = float(np.sqrt(sum(float(jnp.sum(jnp.square(a - b.astype(a.dtype)))) for a, b in zip(g32, g16))))
    errors = {
        "initial_value": err(o32["init"].value, o16["init"].value),
        "initial_policy_logits": err(o32["init"].policy_logits, o16["init"].policy_logits),
        "initial_policy_probs": err(softmax(o32["init"].policy_logits), softmax(o16["init"].policy_logits)),
        "initial_latent": err(o32["init"].state[0], o16["init"].state[0]),
        "recurrent_reward": err(o32["recu"].reward, o16["recu"].reward),
        "recurrent_value": err(o32["recu"].value, o16["recu"].value),
        "recurrent_policy_probs": err(softmax(o32["recu"].policy_logits), softmax(o16["recu"].policy_logits)),
        "loss": {"float32": float(loss32), "bfloat16": float(loss16),
                 "rel": abs(float(loss16) - float(loss32)) / max(abs(float(loss32)), 1e-12)},
        "grad": {"norm_float32": gnorm32, "norm_of_difference": gdiff, "rel": gdiff / max(gnorm32, 1e-12)},
    }
    speedup = {k: results["float32"][k]["ms"] / results["bfloat16"][k]["ms"] for k in results["float32"]}
    return {
        "what": (
            "library option NetworkConfig.dtype='bfloat16' (compute dtype: float32 params and uint8 inputs cast to "
            "bfloat16 inside each layer, outputs cast back to float32) vs 'float32', same params, same inputs; "
            "params: fresh init with the zero-initialised head layers re-drawn as N(0, 1/fan_in); inputs: one "
            "training batch from the replay (B*(K+1) observations, the size of an update's bootstrap batch)"
        ),
        "batch_observations": int(flat_obs.shape[0]),
        "timing_ms": results,
        "speedup_float32_over_bfloat16": speedup,
        "errors": errors,
    }


# ---------------------------------------------------------------------------------------
# One preset


def projection(cfg: Config, full_counts: Config, env: dict, act: dict, fill: dict, train: dict, loop: dict | None) -> dict:
    n = cfg.env.num_envs
    steps = FULL_RUN_AGENT_STEPS
    min_size = full_counts.replay.min_size
    rr = full_counts.loop.replay_ratio
    extra = full_counts.loop.extra_updates
    updates = int(rr * (steps - min_size)) + extra
    vec_s = (env["vector_step_ms"] + act["ms_with_host_transfers"] + fill["add_ms"]) / 1e3
    collect_s = steps / n * vec_s
    update_s = updates / train["updates_per_s"]
    out = {
        "agent_steps": steps,
        "min_size": min_size,
        "replay_ratio": rr,
        "extra_updates": extra,
        "updates": updates,
        "sequential_s": collect_s + update_s,
        "sequential_parts_s": {"env_act_add": collect_s, "updates": update_s},
        "sequential_formula": "steps/num_envs * (env vector step + act with host transfers + replay add) + updates / updates_per_s",
        "excludes": "evaluation, checkpointing, start-up and compiles",
    }
    if loop is not None:
        before = min_size / n * vec_s
        during = (steps - min_size) / loop["agent_steps_per_s"]
        after = extra / train["updates_per_s"]
        out["measured_loop_s"] = before + during + after
        out["measured_loop_parts_s"] = {"before_min_size": before, "loop_at_replay_ratio": during, "extra_updates": after}
        out["measured_loop_formula"] = (
            "min_size/num_envs * (env + act + add) + (steps - min_size) / loop agent_steps_per_s + extra_updates / updates_per_s"
        )
    return out


def run_preset(name: str, args) -> dict:
    base = get_preset(name)
    overrides: dict[str, Any] = scale_overrides(base) if args.scale else {}
    if args.bf16:
        overrides["network.dtype"] = "bfloat16"
    cfg = apply_overrides(base, overrides) if overrides else base
    n = cfg.env.num_envs
    prefill_vec = math.ceil(cfg.replay.min_size / n)
    budget = args.loop_steps or (96 if args.scale else 2_000)
    budget = n * math.ceil(budget / n)
    segment = loop_segment_overrides(cfg, prefill_vec * n, budget)
    loop_cfg = apply_overrides(cfg, segment)
    reps = (3, 10, 2.0) if args.scale else (5, 30, 10.0)
    print(f"\n=== {name}{' (scaled)' if args.scale else ''}{' bf16' if args.bf16 else ''} ===", flush=True)
    for k, v in overrides.items():
        print(f"  override {k} = {v!r}")

    t_start = time.perf_counter()
    log_start = COMPILE_LOG.mark()
    with tempfile.TemporaryDirectory(prefix="throughput_") as run_dir:
        t0 = time.perf_counter()
        trainer = BenchTrainer(loop_cfg, run_dir, progress=False, tensorboard=False)
        build_s = time.perf_counter() - t0
        # float32 params whatever the compute dtype; kept for the bf16 comparison (init is slow on a CPU)
        fresh_params = jax.tree_util.tree_map(jnp.copy, trainer.state.params) if args.bf16 else None
        print(f"  trainer built in {build_s:.1f} s: obs {trainer.model.observation_shape} "
              f"{np.dtype(trainer.model.observation_dtype).name}, {trainer.envs.num_actions} actions, {n} envs", flush=True)

        env = bench_env(trainer.envs, vector_steps=args.env_steps or (150 if args.scale else 500), warmup=10)
        print(f"  env    {env['agent_steps_per_s']:9.0f} agent steps/s  ({env['vector_step_ms']:.2f} ms per vector step)", flush=True)

        obs_np = current_obs(trainer.envs, trainer.envs.reset())
        act = bench_act(trainer, obs_np, reps)
        print(f"  act    {act['ms']:9.2f} ms per vector step ({act['ms_with_host_transfers']:.2f} ms with host transfers), "
              f"compile {act['compile_s']:.1f} s", flush=True)

        fill = prefill(trainer, prefill_vec)
        print(f"  fill   {fill['transitions']} transitions in {fill['total_s']:.1f} s ({fill['add_ms']:.2f} ms per add, "
              f"compile {fill['add_compile_s']:.1f} s)", flush=True)
        trainer.counters.env_steps = prefill_vec * n  # the loop segment starts at min_size

        train = bench_train(trainer, (3, 8, 4.0) if args.scale else reps)
        print(f"  train  {train['updates_per_s']:9.1f} updates/s ({train['call_ms']:.0f} ms per call of "
              f"{train['updates_per_call']}), compile {train['compile_s']:.1f} s, loss {train['loss_total_last']:.3g}", flush=True)

        loop = None
        if not args.no_loop:
            loop = bench_loop(trainer, warmup_vector_steps=2)
            print(f"  loop   {loop['agent_steps_per_s']:9.1f} agent steps/s at replay ratio {loop['replay_ratio']} "
                  f"({loop['ms_per_vector_step']:.0f} ms per vector step, {loop['steady_vector_steps']} timed)", flush=True)

        compiles = COMPILE_LOG.summary(PROGRAMS, since=log_start)
        dispatch_cache = {"act": trainer._act._cache_size(), "train": trainer._train._cache_size(), "add": trainer._add._cache_size()}
        retraced = {k: v["traces"] for k, v in compiles.items() if v["traces"] != 1}
        retraced.update({f"{k} (dispatch-cache entries)": v for k, v in dispatch_cache.items() if v != 1})
        if retraced:
            print(f"  WARNING: programs traced other than once: {retraced}", flush=True)
        if loop is not None and loop["compiled_during_timed_window"]:
            print(f"  WARNING: compiled inside the timed loop window: {loop['compiled_during_timed_window']}", flush=True)

        bf16 = None
        if args.bf16:
            bf16 = bf16_comparison(cfg, trainer, fresh_params, (3, 10, 2.0) if args.scale else reps)
            for k, v in bf16["timing_ms"]["float32"].items():
                print(f"  bf16   {k:20} f32 {v['ms']:8.2f} ms  bf16 {bf16['timing_ms']['bfloat16'][k]['ms']:8.2f} ms", flush=True)
            e = bf16["errors"]
            print(f"  bf16   value max abs err {e['initial_value']['max_abs']:.3g} (rel {e['initial_value']['max_rel']}), "
                  f"policy prob max abs err {e['initial_policy_probs']['max_abs']:.3g}, loss rel err {e['loss']['rel']:.3g}, "
                  f"grad rel err {e['grad']['rel']:.3g}", flush=True)

    proj = projection(cfg, base, env, act, fill, train, loop)
    return {
        "preset": name,
        "scale": bool(args.scale),
        "bf16": bool(args.bf16),
        "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in overrides.items()},
        "loop_segment_overrides": segment,
        "config": to_dict(cfg),
        "trainer_build_s": build_s,
        "env": env,
        "act": act,
        "replay_fill": fill,
        "train": train,
        "loop": loop,
        "programs_compiled": compiles,
        "retraced": retraced,
        "dispatch_cache_entries": dispatch_cache,
        "dispatch_cache_note": (
            "jitted._cache_size(): C++ dispatch-cache entries. One entry means one trace and one compile; a call "
            "with numpy arguments and one with device arrays of the same shapes make two entries without retracing. "
            "programs_compiled counts traces and backend compiles from jax.monitoring events by function name "
            "(act, train; the replay add is only checked here, its name collides with the eager add primitive)"
        ),
        "projection_full_run": proj,
        "bf16_comparison": bf16,
        "preset_total_s": time.perf_counter() - t_start,
    }


# ---------------------------------------------------------------------------------------
# Reporting


def fmt_h(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"


def print_table(rows: list[dict]) -> None:
    head = (f"{'preset':18} {'env st/s':>9} {'act ms':>8} {'upd/s':>8} {'loop st/s':>9} "
            f"{'compile act/train s':>19} {'full run seq':>12} {'full run loop':>13}")
    print("\n" + head)
    print("-" * len(head))
    for r in rows:
        loop = r["loop"]
        proj = r["projection_full_run"]
        print(
            f"{r['preset']:18} {r['env']['agent_steps_per_s']:9.0f} {r['act']['ms']:8.1f} {r['train']['updates_per_s']:8.2f} "
            f"{(loop['agent_steps_per_s'] if loop else float('nan')):9.1f} "
            f"{r['act']['compile_s']:9.1f}/{r['train']['compile_s']:<9.1f} "
            f"{fmt_h(proj['sequential_s']):>12} {fmt_h(proj['measured_loop_s']) if loop else '-':>13}"
        )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description="Throughput of the Atari-100k loop: env, act, train, whole loop.")
    parser.add_argument("--preset", action="append", choices=PRESETS, help="repeatable; default both")
    parser.add_argument("--scale", action="store_true", help="shrunken sizes for a small CPU (~1-2 min per preset)")
    parser.add_argument("--bf16", action="store_true", help="NetworkConfig.dtype='bfloat16', plus a f32-vs-bf16 network comparison")
    parser.add_argument("--loop-steps", type=int, default=None, help="agent steps in the timed loop segment (default 96 scaled, 2000 full)")
    parser.add_argument("--env-steps", type=int, default=None, help="vector steps for the env section (default 150 scaled, 500 full)")
    parser.add_argument("--no-loop", action="store_true", help="skip the whole-loop section")
    parser.add_argument("--tag", default=None, help="results/throughput_<tag>.json (default from the device)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (overrides --tag)")
    args = parser.parse_args(argv)
    presets = tuple(dict.fromkeys(args.preset)) if args.preset else PRESETS
    tag = args.tag or device_tag() + ("_scaled" if args.scale else "") + ("_bf16" if args.bf16 else "")
    out_path = args.out or RESULTS / f"throughput_{tag}.json"

    global COMPILE_LOG
    COMPILE_LOG = COMPILE_LOG or CompileLog()
    started = time.perf_counter()
    info, commit = machine(), git_commit()
    print(f"jax {info['jax']} on {info['device']} ({info['cpu_count']} CPUs), commit {commit}, "
          f"load average {info['load_average']}")
    rows = [run_preset(p, args) for p in presets]
    print_table(rows)
    print("\nenv st/s: training-env agent steps/s alone; act ms: one batched search per vector step (device);"
          "\nupd/s: train program updates/s; loop st/s: Trainer.run() agent steps/s at the replay ratio;"
          "\nfull run: projected 100k agent steps + replay_ratio*(100k - min_size) + extra_updates updates,"
          "\n  seq = env+act+add and updates back to back, loop = measured loop rate; evaluation excluded.")

    result = {
        "benchmark": "throughput",
        "tag": tag,
        "device": info["device"],
        "jax": info["jax"],
        "commit": commit,
        "scale": bool(args.scale),
        "bf16": bool(args.bf16),
        "presets": list(presets),
        "machine": info,
        "timing": (
            "time.perf_counter; every timed call ends in jax.block_until_ready (or a host copy); compile_s = first "
            "call - steady-state median; train state and replay are donated and the returned ones passed back"
        ),
        "results": rows,
        "total_s": time.perf_counter() - started,
    }
    print()
    write_result(out_path, result)
    print(f"total {result['total_s']:.0f} s")
    return result


if __name__ == "__main__":
    main()
