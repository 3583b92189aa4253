"""Throughput of the Atari-100k training loop, piece by piece and as a whole.

For each preset (``atari100k``: pUCT 50 simulations; ``atari100k-gumbel``: Gumbel 16) this
opens one run with the library's own loop (``agents.loop.open_run``) and times, apart: the
training env (**env**) while it fills the replay through the jitted ``observe`` (**add**), the
jitted **act**, updates/s of the jitted **train**, and the real ``run.run()`` (**loop**) at the
replay ratio from the filled replay; then compile times, jax's trace counts per program, and
the projected wall-clock of a full run (:func:`projection`). ``--scale`` shrinks sizes only
(``benchmarks.harness.scale_overrides``) for a CPU; ``--bf16`` runs in bfloat16 and compares
the network alone in both dtypes (:func:`bf16_comparison`). Every column and why it is
measured so: ``benchmarks/README.md``, "Throughput".

    python benchmarks/throughput.py --scale              # both presets, ~1-2 min each on a 2-core CPU
    python benchmarks/throughput.py                      # full presets (GPU)
    python benchmarks/throughput.py --preset atari100k --bf16

Prints a table and writes ``benchmarks/results/throughput_<tag>.json`` (tag: ``cpu`` or
the GPU kind, ``_scaled`` with ``--scale``, ``_bf16`` with ``--bf16``).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import agents.envs
from agents.efficientzero import make_agent, make_model
from agents.efficientzero.presets import PRESETS as ALL_PRESETS, get_preset
from agents.loop import open_run
from benchmarks.harness import (RESULTS, CompileLog, Parser, apply_overrides, device_tag, fill_replay, machine,
                                randomize_heads, scale_overrides, time_calls, time_stats, write_result)
from dreamer import runtime
from dreamer.config import Config, to_dict
from dreamer.learner import Learner
from dreamer.losses import loss_fn

PRESETS = ("atari100k", "atari100k-gumbel")
FULL_RUN_AGENT_STEPS = 100_000
PROGRAMS = ("act", "observe", "train")  # jax's names of the run's jitted functions


def first_and_steady(call, reps: tuple) -> dict:
    s = time_calls(call, min_reps=reps[0], max_reps=reps[1], target_s=reps[2], warmup=True)
    return {**s, "compile_s": max(s["first_call_s"] - s["median_s"], 0.0)}


def bench_act(run, reps: tuple) -> dict:
    keys = itertools.cycle(list(jax.random.split(jax.random.PRNGKey(1), 64)))
    obs_np = run.envs.observation()
    obs = jax.block_until_ready(jnp.asarray(obs_np))
    dev = first_and_steady(lambda: run.act(run.state, next(keys), obs, 1.0), reps)  # a Python float, as the loop
    host = time_calls(lambda: np.asarray(run.act(run.state, next(keys), jnp.asarray(obs_np), 1.0).action),
                      min_reps=reps[0], max_reps=reps[1], target_s=reps[2])
    return {"batch": int(obs.shape[0]), "compile_s": dev["compile_s"], "ms": 1e3 * dev["median_s"],
            "ms_with_host_transfers": 1e3 * host["median_s"], "device": dev, "host": host}


def bench_train(run, reps: tuple) -> dict:
    box = {}

    def call():
        run.state, box["metrics"] = run.train_step(run.state)  # donated: keep the returned state
        return run.state, box["metrics"]

    s = first_and_steady(call, reps)
    per_call = run.agent.updates_per_call
    loss = float(box["metrics"]["loss/total"])
    return {"updates_per_call": per_call, "compile_s": s["compile_s"], "call_ms": 1e3 * s["median_s"],
            "updates_per_s": per_call / s["median_s"], "calls": s, "loss_total_last": loss,
            "loss_finite": bool(np.isfinite(loss))}


def bench_loop(run, log: CompileLog, warmup_vector_steps: int = 2) -> dict:
    """Times the real ``run.run()``, evaluation and checkpoints off; steady state from the
    loop's own env-step stamps after the warm-up steps."""
    c = run.counters
    start_steps, start_updates = c.env_steps, c.updates
    run.run_evaluation = lambda: float("nan")  # instance attributes: the loop calls these by name
    run.save = lambda: None
    stamps, env_step, n = [], run.envs.step, run.envs.num_envs

    def step(actions):  # the loop's env steps, each time-stamped at its end
        out = env_step(actions)
        stamps.append(time.perf_counter())
        return out

    run.envs.step = step
    t0 = time.perf_counter()
    run.run()
    total = time.perf_counter() - t0
    del run.envs.step  # the class's own again
    w = min(warmup_vector_steps, max(len(stamps) - 2, 0))
    steady_steps, steady_s = len(stamps) - 1 - w, stamps[-1] - stamps[w]
    return {
        "agent_steps": c.env_steps - start_steps,
        "updates": c.updates - start_updates,
        "replay_ratio": run.cfg.loop.replay_ratio,
        "run_total_s": total,
        "steady_vector_steps": steady_steps,
        "steady_s": steady_s,
        "agent_steps_per_s": n * steady_steps / steady_s,
        "ms_per_vector_step": 1e3 * steady_s / steady_steps,
        "compiled_during_timed_window": log.between(stamps[w], stamps[-1]),
    }


def bf16_comparison(cfg: Config, spec, replay, reps: tuple) -> dict:
    """float32 vs the bfloat16 compute dtype, network alone: same params (fresh, heads
    re-drawn at random), same inputs (one training batch, reanalysis off)."""
    models = {dt: make_model(apply_overrides(cfg, {"network.dtype": dt}), spec) for dt in ("float32", "bfloat16")}
    params = randomize_heads(jax.jit(models["float32"].init)(jax.random.PRNGKey(0)), jax.random.PRNGKey(12))
    learner = Learner(models["float32"], dataclasses.replace(cfg.learner, reanalyze_fraction=0.0), cfg.replay, cfg.planner)
    batch = jax.jit(learner.make_batch)(params, params, replay, jax.random.PRNGKey(13), jnp.float32(1.0))[0]
    flat_obs = batch.obs.reshape((-1, *batch.obs.shape[2:]))  # B (K+1) observations, as an update's bootstrap
    timing, out = {}, {}
    for dt, m in models.items():
        fns = {"initial_inference": (jax.jit(m.initial_inference), (params, flat_obs)),
               "loss_and_grad": (jax.jit(jax.value_and_grad(lambda p, b, m=m: loss_fn(p, m, b, cfg.learner)[0])),
                                 (params, batch))}
        for name, (fn, args) in fns.items():
            out[dt, name] = jax.block_until_ready(fn(*args))
            timing.setdefault(name, {})[dt] = 1e3 * first_and_steady(lambda: fn(*args), reps)["median_s"]
    i32, i16 = out["float32", "initial_inference"], out["bfloat16", "initial_inference"]
    (l32, g32), (l16, g16) = out["float32", "loss_and_grad"], out["bfloat16", "loss_and_grad"]
    g16 = jax.tree_util.tree_map(lambda a, b: a - b.astype(a.dtype), g32, g16)
    probs = [jax.nn.softmax(o.policy_logits.astype(jnp.float32)) for o in (i32, i16)]
    return {
        "ms": timing,
        "speedup_float32_over_bfloat16": {k: v["float32"] / v["bfloat16"] for k, v in timing.items()},
        "value_max_abs_err_rel_to_max": float(jnp.max(jnp.abs(i32.value - i16.value)) / jnp.max(jnp.abs(i32.value))),
        "policy_prob_max_abs_err": float(jnp.max(jnp.abs(probs[0] - probs[1]))),
        "loss_rel_err": abs(float(l16) - float(l32)) / max(abs(float(l32)), 1e-12),
        "grad_rel_err": float(optax.tree.norm(g16) / optax.tree.norm(g32)),
        "batch_observations": int(flat_obs.shape[0]),
    }


def projection(cfg: Config, n: int, env_ms: float, act_ms: float, add_ms: float, updates_per_s: float,
               loop: dict | None) -> dict:
    steps, min_size, rr, extra = FULL_RUN_AGENT_STEPS, cfg.replay.min_size, cfg.loop.replay_ratio, cfg.loop.extra_updates
    updates = int(rr * (steps - min_size)) + extra
    vec_s = (env_ms + act_ms + add_ms) / 1e3
    out = {"agent_steps": steps, "updates": updates, "min_size": min_size, "replay_ratio": rr, "extra_updates": extra,
           "sequential_s": steps / n * vec_s + updates / updates_per_s,
           "sequential_formula": "steps/num_envs * (env + act with host transfers + add) + updates / updates_per_s",
           "excludes": "evaluation, checkpointing, start-up and compiles"}
    out["sequential_min"] = out["sequential_s"] / 60
    if loop is not None:
        out["measured_loop_s"] = (min_size / n * vec_s + (steps - min_size) / loop["agent_steps_per_s"]
                                  + extra / updates_per_s)
        out["measured_loop_formula"] = ("min_size/num_envs * (env + act + add) + (steps - min_size) / loop "
                                        "agent_steps_per_s + extra_updates / updates_per_s")
        out["measured_loop_min"] = out["measured_loop_s"] / 60
    return out


def run_preset(name: str, args, log: CompileLog) -> dict:
    base = get_preset(name)
    overrides = scale_overrides(base) if args.scale else {}
    if args.bf16:
        overrides["network.dtype"] = "bfloat16"
    cfg = apply_overrides(base, overrides)
    n = cfg.env.num_envs
    prefill = math.ceil(cfg.replay.min_size / n)
    budget = n * math.ceil((args.loop_steps or (96 if args.scale else 2_000)) / n)
    # The timed segment: a short budget from the pre-filled replay on; no logging inside it;
    # few eval envs (they are built, never stepped).
    segment = {"loop.env_steps": prefill * n + budget, "loop.extra_updates": 0, "loop.log_every_s": 1e9,
               "loop.checkpoint_every_s": 1e9, "env.num_eval_envs": 2, "env.eval_episodes": 2}
    reps = (3, 10, 2.0) if args.scale else (5, 30, 10.0)
    print(f"\n=== {name}{' (scaled)' if args.scale else ''}{' bf16' if args.bf16 else ''} ===", flush=True)
    for k, v in overrides.items():
        print(f"  override {k} = {v!r}")

    t_start, mark = time.perf_counter(), log.mark()
    with tempfile.TemporaryDirectory(prefix="throughput_") as run_dir:
        run = open_run(apply_overrides(cfg, segment), make_agent, agents.envs.make, run_dir, progress=False,
                       tensorboard=False)
        build_s = time.perf_counter() - t_start
        spec = run.envs.spec
        print(f"  run opened in {build_s:.1f} s: obs {spec.observation_shape} {np.dtype(spec.frame_dtype).name}, "
              f"{spec.num_actions} actions, {n} envs", flush=True)

        shapes = jax.eval_shape(lambda *a: run.agent.act(*a), run.state, jax.random.PRNGKey(0),
                                jax.ShapeDtypeStruct((n, *spec.observation_shape), spec.frame_dtype), 1.0)
        template = jax.tree_util.tree_map(lambda x: jnp.zeros(x.shape, x.dtype), shapes)  # the act output's structure
        run.state, fill = fill_replay(run.observe, run.state, spec, n, prefill, envs=run.envs, template=template)
        env_s, add_s = (time_stats(fill[k][1:] or fill[k]) for k in ("env_s", "observe_s"))  # the first: compiles
        env = {"num_envs": n, "vector_steps": prefill - 1, "vector_step_ms": 1e3 * env_s["median_s"],
               "agent_steps_per_s": n / env_s["median_s"], "add_ms": 1e3 * add_s["median_s"],
               "add_compile_s": max(fill["observe_s"][0] - add_s["median_s"], 0.0)}
        run.counters.env_steps = prefill * n  # the loop segment starts at min_size
        print(f"  env    {env['agent_steps_per_s']:9.0f} agent steps/s ({env['vector_step_ms']:.2f} ms per vector step); "
              f"add {env['add_ms']:.2f} ms, compile {env['add_compile_s']:.1f} s", flush=True)

        act = bench_act(run, reps)
        print(f"  act    {act['ms']:9.2f} ms per vector step ({act['ms_with_host_transfers']:.2f} ms with host "
              f"transfers), compile {act['compile_s']:.1f} s", flush=True)
        bf16 = bf16_comparison(cfg, spec, run.state.replay, reps) if args.bf16 else None
        train = bench_train(run, (3, 8, 4.0) if args.scale else reps)
        print(f"  train  {train['updates_per_s']:9.1f} updates/s ({train['call_ms']:.0f} ms per call of "
              f"{train['updates_per_call']}), compile {train['compile_s']:.1f} s, loss {train['loss_total_last']:.3g}",
              flush=True)
        loop = None if args.no_loop else bench_loop(run, log)
        if loop:
            print(f"  loop   {loop['agent_steps_per_s']:9.1f} agent steps/s at replay ratio {loop['replay_ratio']} "
                  f"({loop['ms_per_vector_step']:.0f} ms per vector step, {loop['steady_vector_steps']} timed)", flush=True)
        compiles = log.summary(PROGRAMS, since=mark)
        cache = {"act": run.act._cache_size(), "observe": run.observe._cache_size(), "train": run.train_step._cache_size()}
    retraced = {k: v["traces"] for k, v in compiles.items() if v["traces"] != 1}
    retraced.update({f"{k} (dispatch-cache entries)": v for k, v in cache.items() if v != 1})
    if retraced:
        print(f"  WARNING: programs traced other than once: {retraced}", flush=True)
    if loop and loop["compiled_during_timed_window"]:
        print(f"  WARNING: compiled inside the timed loop window: {loop['compiled_during_timed_window']}", flush=True)
    if bf16:
        ms = ", ".join(f"{k} {v['float32']:.2f} / {v['bfloat16']:.2f} ms" for k, v in bf16["ms"].items())
        print(f"  bf16   f32 / bf16: {ms}; value err {bf16['value_max_abs_err_rel_to_max']:.3g}, policy "
              f"prob err {bf16['policy_prob_max_abs_err']:.3g}, loss rel {bf16['loss_rel_err']:.3g}, grad rel "
              f"{bf16['grad_rel_err']:.3g}", flush=True)
    return {
        "preset": name, "overrides": overrides, "loop_segment_overrides": segment, "config": to_dict(cfg),
        "run_open_s": build_s, "env": env, "act": act, "train": train, "loop": loop,
        "programs_compiled": compiles, "dispatch_cache_entries": cache, "retraced": retraced,
        "projection_full_run": projection(cfg, n, env["vector_step_ms"], act["ms_with_host_transfers"], env["add_ms"],
                                          train["updates_per_s"], loop),
        "bf16_comparison": bf16, "preset_total_s": time.perf_counter() - t_start,
    }


def duration(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h ({seconds / 60:,.0f} min)"


def main(argv=None) -> dict:
    parser = Parser(prog="throughput.py", description="Throughput of the Atari-100k loop: env, act, train, whole loop.")
    parser.add_argument("--preset", action="append", choices=sorted(ALL_PRESETS), help=f"repeatable; default {PRESETS}")
    parser.add_argument("--scale", action="store_true", help="shrunken sizes for a small CPU (~1-2 min per preset)")
    parser.add_argument("--bf16", action="store_true", help="NetworkConfig.dtype='bfloat16', plus a f32-vs-bf16 network comparison")
    parser.add_argument("--loop-steps", type=int, default=None, help="agent steps in the timed loop segment (default 96 scaled, 2000 full)")
    parser.add_argument("--no-loop", action="store_true", help="skip the whole-loop section")
    parser.add_argument("--tag", default=None, help="results/throughput_<tag>.json (default from the device)")
    parser.add_argument("--out", type=Path, default=None, help="JSON path (overrides --tag)")
    args = parser.parse_args(argv)
    settings = runtime.configure(cache_dir="")  # no cache: compiles count; XLA_FLAGS set by hand are kept
    if args.loop_steps is not None and args.loop_steps < 1:
        parser.error(f"--loop-steps must be >= 1, got {args.loop_steps}")
    presets = tuple(dict.fromkeys(args.preset or PRESETS))
    tag = args.tag or device_tag() + ("_scaled" if args.scale else "") + ("_bf16" if args.bf16 else "")
    out = parser.writable(args.out or RESULTS / f"throughput_{tag}.json")

    log, started, info = CompileLog(), time.perf_counter(), machine()
    print(f"jax {info['jax']} on {info['device']} ({info['cpu_count']} CPUs), load average {info['load_average']}")
    rows = [run_preset(p, args, log) for p in presets]
    table = (["preset", "env st/s", "act ms", "upd/s", "loop st/s", "compile act / train s", "full run seq", "full run loop"],
             [[r["preset"], f"{r['env']['agent_steps_per_s']:,.0f}", f"{r['act']['ms']:.1f}",
               f"{r['train']['updates_per_s']:.2f}", f"{r['loop']['agent_steps_per_s']:.1f}" if r["loop"] else "-",
               f"{r['act']['compile_s']:.1f} / {r['train']['compile_s']:.1f}",
               duration(r["projection_full_run"]["sequential_s"]),
               duration(r["projection_full_run"]["measured_loop_s"]) if r["loop"] else "-"] for r in rows])
    result = {
        "benchmark": "throughput", "tag": tag, "scale": args.scale, "bf16": args.bf16, "presets": list(presets),
        "runtime": settings,
        "machine": info,
        "timing": ("time.perf_counter; every timed call ends in jax.block_until_ready (or a host copy); compile_s = "
                   "first call - steady-state median; the agent state is donated and the returned one passed back"),
        "columns": ("env st/s: training-env agent steps/s alone; act ms: one batched search per vector step (device); "
                    "upd/s: train updates/s; loop st/s: run.run() agent steps/s at the replay ratio; full run: "
                    "100k agent steps + replay_ratio*(100k - min_size) + extra_updates updates, seq = env+act+add and "
                    "updates back to back, loop = the measured loop rate; evaluation excluded"),
        "results": rows, "total_s": time.perf_counter() - started,
    }
    write_result(out, result, table)
    return result


if __name__ == "__main__":
    main()
