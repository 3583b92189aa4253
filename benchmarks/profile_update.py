"""Where the time (and the FLOPs) of one training update go, stage by stage.

For each preset (``atari100k``: pUCT 50 simulations; ``atari100k-gumbel``: Gumbel 16) one
:class:`dreamer.learner.Learner` update is cut into its stages (:data:`STAGES`), each the
learner's own method jitted alone with the real shapes, beside the whole ``Learner.update``:
XLA's FLOPs from shapes alone with every loop iteration counted (:func:`analyse`), their floors
for a full run (:func:`full_run`), and times on a pre-filled replay (:func:`time_stages`). How
and why: ``benchmarks/README.md``, "Profile of the update".

    python benchmarks/profile_update.py --scale            # full-size FLOPs + CPU timing at --scale, both presets
    python benchmarks/profile_update.py --scale --no-full  # only the scaled analysis and timing
    python benchmarks/profile_update.py                    # full size, FLOPs and timing (meant for a GPU)

Prints a table per preset and writes ``benchmarks/results/profile_update_<tag>.json`` (tag:
``cpu`` or the GPU kind, ``_scaled`` with ``--scale``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import mctx

import agents.envs
from agents.efficientzero import make_agent, make_model
from agents.efficientzero.presets import PRESETS as ALL_PRESETS, get_preset
from benchmarks.harness import (RESULTS, Parser, apply_overrides, device_tag, fill_replay, machine, randomize_heads,
                                scale_overrides, time_stats, wall, write_result)
from benchmarks.tables import markdown_table
from dreamer.config import Config, to_dict
from dreamer.learner import Learner
from dreamer.planner import plan

PRESETS = ("atari100k", "atari100k-gumbel")
FULL_RUN_AGENT_STEPS = 100_000
H100_BF16_DENSE = 989e12  # FLOP/s, H100 SXM dense bf16 tensor cores (spec sheet)
H100_FP32 = 60e12  # FLOP/s, ~67 spec for H100 SXM fp32 without tensor cores; rounded down
STAGES = ("sample", "targets", "bootstrap", "reanalyse", "assemble", "loss_grad", "apply")
LABELS = {
    "sample": "(1) sample",
    "targets": "(2) n-step targets + frame stacks",
    "bootstrap": "(3) bootstrap values (target params, or stored by the last sweep)",
    "reanalyse": "(4) reanalysis search (or the stored sweep policies)",
    "assemble": "(5) assemble value targets and batch",
    "loss_grad": "(6) loss + gradient (+ augment)",
    "apply": "(7) optimiser + target refresh + priorities",
    "update": "whole update (Learner.update)",
}
DONATED = ("apply", "update")  # (state, replay, ...) -> (state, replay, ...), donated as in training


def stage_functions(learner: Learner) -> dict[str, Callable]:
    """Each stage of ``learner.update`` as a pure function of the previous stages' outputs."""
    lc = learner.learner
    sweep = lc.reanalyze == "sweep"  # the batch gathers what the last reanalysis sweep stored

    def targets(replay, window):
        plan_ = learner.targets(window)
        return plan_, learner.observations(replay, window, plan_, bootstrap=not sweep)

    def bootstrap(target_params, replay, window, plan_, obs):
        if sweep:
            return learner.stored_bootstrap(replay, window, plan_)
        return learner.bootstrap(target_params, obs.bootstrap)

    def reanalyse(params, rng, obs, window):
        stored = window.policy[:, : lc.unroll_steps + 1]
        return stored if sweep else learner.reanalyse(params, rng, obs.unroll, stored)[0]

    def assemble(replay, window, plan_, obs, boot_values, policy):
        return learner.assemble(replay, window, plan_, obs.unroll, boot_values, policy)

    def loss_grad(params, batch, rng):
        grads, priorities, _ = learner.loss_and_grad(params, batch, rng)
        return priorities, grads

    return {"sample": learner.sample, "targets": targets, "bootstrap": bootstrap, "reanalyse": reanalyse,
            "assemble": assemble, "loss_grad": loss_grad, "apply": learner.apply, "update": learner.update}


def stage_arguments(call: Callable, state, replay, key, beta) -> dict[str, tuple]:
    """Every stage's arguments, from ``call(name, *args)`` of the stages before it
    (``jax.eval_shape`` for shapes, or the jitted stages for values)."""
    args = {"sample": (replay, key, beta)}
    window = call("sample", *args["sample"])
    args["targets"] = (replay, window)
    plan_, obs = call("targets", *args["targets"])
    args["bootstrap"] = (state.target_params, replay, window, plan_, obs)
    args["reanalyse"] = (state.params, key, obs, window)
    args["assemble"] = (replay, window, plan_, obs, call("bootstrap", *args["bootstrap"]), call("reanalyse", *args["reanalyse"]))
    args["loss_grad"] = (state.params, call("assemble", *args["assemble"]), key)
    priorities, grads = call("loss_grad", *args["loss_grad"])
    args["apply"] = (state, replay, grads, window, priorities)
    args["update"] = (state, replay)
    return args


@contextlib.contextmanager
def loops_unrolled(search_unroll: int):
    """At trace time: ``jax.lax.scan`` fully unrolled (the loss's unroll scan) and mctx's
    simulation loop unrolled ``search_unroll`` times. The library calls both by attribute."""
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
    """Lowers and compiles ``fn(*args)`` (shapes suffice) and returns XLA's flops and bytes."""
    t0 = time.perf_counter()

    def fresh(*a):  # a new function object each time: jax's trace cache must not hand back another variant
        return fn(*a)

    with loops_unrolled(search_unroll) if unroll_loops else contextlib.nullcontext():
        lowered = jax.jit(fresh).lower(*args)
    t1 = time.perf_counter()
    ca = lowered.compile().cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca  # older jax: one dict per device
    return {"flops": float(ca.get("flops", 0.0)), "bytes": float(ca.get("bytes accessed", 0.0)),
            "lower_s": t1 - t0, "compile_s": time.perf_counter() - t1}


def search_corrected(fn: Callable, args: tuple, sims: int) -> dict:
    """Cost of a program holding one mctx search of ``sims`` simulations, every simulation
    counted: from the costs with the simulation loop unrolled once and twice."""
    c1 = xla_cost(fn, args, search_unroll=1)
    c2 = xla_cost(fn, args, search_unroll=2)
    copies = 1 + sims % 2  # unroll=2 over an odd trip count keeps one remainder copy outside the loop
    per_sim = {k: (c2[k] - c1[k]) / copies for k in ("flops", "bytes")}
    return {"flops": c1["flops"] + (sims - 1) * per_sim["flops"], "bytes": c1["bytes"] + (sims - 1) * per_sim["bytes"],
            "per_simulation_flops": per_sim["flops"], "per_simulation_bytes": per_sim["bytes"],
            "lower_s": c1["lower_s"] + c2["lower_s"], "compile_s": c1["compile_s"] + c2["compile_s"]}


def analyse(cfg: Config, spec, label: str) -> dict:
    """XLA FLOPs and bytes of every stage, the whole update, one act call and one root of a
    reanalysis sweep, from shapes only."""
    model = make_model(cfg, spec)
    agent = make_agent(cfg, spec, model)
    learner = Learner(model, cfg.learner, cfg.replay, cfg.planner)
    fns = stage_functions(learner)
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    astate = jax.eval_shape(agent.init, key)
    args = stage_arguments(lambda name, *a: jax.eval_shape(fns[name], *a), astate.train, astate.replay, key,
                           jax.ShapeDtypeStruct((), jnp.float32))
    sims = cfg.planner.num_simulations
    searched = (cfg.learner.reanalyze == "batch"
                and int(round(cfg.learner.reanalyze_fraction * cfg.replay.batch_size)) > 0)  # as Learner.reanalyse
    out: dict[str, Any] = {}
    print(f"  [{label}] cost analysis:", flush=True)
    for name in (*STAGES, "update", "act", "sweep_root"):
        if name == "update":
            cost = xla_cost(fns[name], args[name])
            if searched:
                cost["flops_simulation_loop_once"] = cost["flops"]
                cost["flops"] += (sims - 1) * out["reanalyse"]["per_simulation_flops"]
                cost["bytes"] += (sims - 1) * out["reanalyse"]["per_simulation_bytes"]
        elif name == "act":  # one act call per vector step, for the full-run projection
            obs = jax.ShapeDtypeStruct((cfg.env.num_envs, *spec.observation_shape), spec.frame_dtype)
            cost = search_corrected(lambda s, r, o: agent.act(s, r, o, 1.0), (astate, key, obs), sims)
        elif name == "reanalyse" and searched:
            cost = search_corrected(fns[name], args[name], sims)
        elif name == "sweep_root":  # one root of a reanalysis sweep: a search at a chunk of 1,024 roots
            roots = jax.ShapeDtypeStruct((1024, *spec.observation_shape), spec.frame_dtype)
            cost = search_corrected(lambda p, r, o: plan(p, r, o, model=model, config=cfg.planner),
                                    (astate.train.params, key, roots), sims)
            cost = {k: v / 1024 if k in ("flops", "bytes", "per_simulation_flops", "per_simulation_bytes") else v
                    for k, v in cost.items()}
        else:
            cost = xla_cost(fns[name], args[name])
        out[name] = cost
        print(f"    {name:10} {cost['flops'] / 1e9:12.3f} GFLOP {cost['bytes'] / 1e9:10.3f} GB   "
              f"lower {cost['lower_s']:5.1f} s compile {cost['compile_s']:6.1f} s", flush=True)
    out["shapes"] = {"batch": cfg.replay.batch_size, "unroll_steps": cfg.learner.unroll_steps,
                     "observation": list(spec.observation_shape), "num_actions": spec.num_actions, "simulations": sims,
                     "search": cfg.planner.search}
    return out


def time_stages(cfg: Config, spec, rounds: int, target_s: float) -> dict:
    model = make_model(cfg, spec)
    agent = make_agent(cfg, spec, model)
    fns = stage_functions(Learner(model, cfg.learner, cfg.replay, cfg.planner))
    astate = jax.jit(agent.init)(jax.random.PRNGKey(0))
    n = cfg.env.num_envs
    astate, _ = fill_replay(jax.jit(agent.observe, donate_argnums=0), astate, spec, n, math.ceil(cfg.replay.min_size / n))
    params = randomize_heads(astate.train.params, jax.random.PRNGKey(12))
    state = astate.train._replace(params=params, target_params=jax.tree_util.tree_map(jnp.copy, params))
    jits = {name: jax.jit(fn, donate_argnums=(0, 1) if name in DONATED else ()) for name, fn in fns.items()}
    args = stage_arguments(lambda name, *a: jits[name](*a), state, astate.replay, jax.random.PRNGKey(3),
                           jnp.float32(cfg.replay.beta))  # (the chain never reaches the donating stages)

    def caller(name):
        if name not in DONATED:
            return lambda: jits[name](*args[name])
        live = [jax.tree_util.tree_map(jnp.copy, a) for a in args[name][:2]]

        def call():  # donated: pass the returned state and replay back
            out = jits[name](*live, *args[name][2:])
            live[:] = out[:2]
            return out

        return call

    calls = {name: caller(name) for name in (*STAGES, "update")}
    first = {name: wall(call) for name, call in calls.items()}  # the warm-up call of each: its compile
    times: dict[str, list[float]] = {name: [] for name in calls}
    t_start, done = time.perf_counter(), 0
    while done < rounds or (done < 3 * rounds and time.perf_counter() - t_start < target_s):
        for name, call in calls.items():
            times[name].append(wall(call))
        done += 1
    print(f"  timing: median ms over {done} round-robin rounds", flush=True)
    return {name: {"ms": 1e3 * time_stats(t)["median_s"], "first_call_s": first[name], **time_stats(t)}
            for name, t in times.items()}


def sweep_roots(cfg: Config, updates: int) -> int:
    """Roots the reanalysis sweeps of a whole run search (0 without sweeps): one sweep per
    target period, over every position stored by then (env steps at that update, capped by
    the replay's capacity)."""
    if cfg.learner.reanalyze != "sweep":
        return 0
    period, rr, min_size = cfg.learner.target_update_interval, cfg.loop.replay_ratio, cfg.replay.min_size
    stored = [min(cfg.replay.capacity, FULL_RUN_AGENT_STEPS, int(min_size + u / rr))
              for u in range(period, updates + 1, period)]
    return sum(stored)


def full_run(costs: dict, cfg: Config) -> dict:
    """FLOPs of a whole run: every update, one act call per vector step and the reanalysis
    sweeps, and their floors."""
    updates = int(cfg.loop.replay_ratio * (FULL_RUN_AGENT_STEPS - cfg.replay.min_size)) + cfg.loop.extra_updates
    act_calls = FULL_RUN_AGENT_STEPS // cfg.env.num_envs
    roots = sweep_roots(cfg, updates)
    sweeps = costs["sweep_root"]["flops"] * roots
    game = costs["update"]["flops"] * updates + costs["act"]["flops"] * act_calls + sweeps
    return {"updates": updates, "act_calls": act_calls, "update_tflop": costs["update"]["flops"] / 1e12,
            "act_tflop_per_run": costs["act"]["flops"] * act_calls / 1e12, "sweep_roots": roots,
            "sweep_tflop_per_run": sweeps / 1e12, "run_flop": game,
            "floor_ms_per_update_bf16_989": 1e3 * costs["update"]["flops"] / H100_BF16_DENSE,
            "floor_ms_per_update_fp32_60": 1e3 * costs["update"]["flops"] / H100_FP32,
            "floor_min_per_run_bf16_989": game / H100_BF16_DENSE / 60, "floor_min_per_run_fp32_60": game / H100_FP32 / 60,
            "sustained_tflops_for_30_min": game / 1800 / 1e12, "what": "FLOP floors (FLOPs / peak rate), not measurements"}


def env_spec(cfg: Config):
    envs = agents.envs.make(dataclasses.replace(cfg.env, num_envs=1), "train", 0)
    envs.close()
    return envs.spec


def run_preset(name: str, args) -> dict:
    base = get_preset(name)
    overrides = scale_overrides(base) if args.scale else {}
    cfg = apply_overrides(base, overrides)
    print(f"\n=== {name}{' (timed at --scale)' if args.scale else ''} ===", flush=True)
    for k, v in overrides.items():
        print(f"  override {k} = {v!r}")
    t0 = time.perf_counter()
    spec, full_spec = env_spec(cfg), env_spec(base)
    full = None if args.no_full else analyse(base, full_spec, "full size")
    timed_size = analyse(cfg, spec, "timed size") if args.scale or full is None else None
    timing = None if args.no_timing else time_stages(cfg, spec, args.rounds, args.target_s)
    flops = full or timed_size
    sum_ms = sum(timing[s]["ms"] for s in STAGES) if timing else None
    rows = []
    for s in (*STAGES, "update"):
        share = flops[s]["flops"] / flops["update"]["flops"] if flops["update"]["flops"] else float("nan")
        rows.append([LABELS[s], f"{flops[s]['flops'] / 1e9:,.3f}", f"{100 * share:.1f}%",
                     f"{timing[s]['ms']:.1f}" if timing else "-",
                     f"{100 * timing[s]['ms'] / timing['update']['ms']:.1f}%" if timing else "-"])
    rows.append(["sum of the stages", f"{sum(flops[s]['flops'] for s in STAGES) / 1e9:,.3f}", "",
                 f"{sum_ms:.1f}" if timing else "-", ""])
    print(f"\n{name}: GFLOP at {'full' if full else 'timed'} size; ms at {'scaled' if args.scale else 'full'} size")
    print(markdown_table(["stage", "GFLOP / update", "FLOP share", "ms", "time share"], rows))
    projection = full_run(flops, base if full else cfg)
    print(f"  full run: {projection['updates']:,} updates x {projection['update_tflop']:.3g} TFLOP + acting + "
          f"{projection['sweep_roots']:,} sweep roots ({projection['sweep_tflop_per_run']:.3g} TFLOP) = "
          f"{projection['run_flop']:.3g} FLOP; floor {projection['floor_min_per_run_bf16_989']:.1f} min at 989 TFLOP/s "
          f"bf16, {projection['floor_min_per_run_fp32_60']:.0f} min at 60 TFLOP/s fp32", flush=True)
    return {"preset": name, "game": base.env.id, "num_actions": spec.num_actions, "scale_overrides": overrides,
            "config_full": to_dict(base), "config_timed": to_dict(cfg), "flops_full": full,
            "flops_timed_size": timed_size, "timing_ms": timing, "full_run": projection,
            "full_run_size": "full" if full else "timed", "preset_total_s": time.perf_counter() - t0}


def main(argv=None) -> dict:
    parser = Parser(prog="profile_update.py", description="One training update stage by stage: XLA FLOPs and timings.")
    parser.add_argument("--preset", action="append", choices=sorted(ALL_PRESETS), help=f"repeatable; default {PRESETS}")
    parser.add_argument("--scale", action="store_true", help="time (and also analyse) the shrunken --scale sizes")
    parser.add_argument("--no-full", action="store_true", help="skip the full-size cost analysis")
    parser.add_argument("--no-timing", action="store_true", help="cost analysis only")
    parser.add_argument("--rounds", type=int, default=10, help="round-robin timing rounds (at least; up to 3x while under --target-s)")
    parser.add_argument("--target-s", type=float, default=20.0, help="seconds of timing rounds per preset")
    parser.add_argument("--tag", default=None)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be >= 1, got {args.rounds}")
    presets = tuple(dict.fromkeys(args.preset or PRESETS))
    tag = args.tag or device_tag() + ("_scaled" if args.scale else "")
    out = parser.writable(args.out or RESULTS / f"profile_update_{tag}.json")
    started, info = time.perf_counter(), machine()
    print(f"jax {info['jax']} on {info['device']} ({info['cpu_count']} CPUs), load average {info['load_average']}")
    result = {
        "benchmark": "profile_update", "tag": tag, "scale": args.scale, "machine": info,
        "presets": [run_preset(p, args) for p in presets],
        "method": {
            "flops": ("XLA cost_analysis() of each stage jitted alone with the real shapes (lowered and compiled, not "
                      "run); loss scan fully unrolled at trace time; mctx simulation loop lowered with unroll 1 and 2, "
                      "total = f1 + (S-1)(f2-f1)"),
            "timing": ("median of round-robin calls after a warm-up call, each ending in block_until_ready; the "
                       "library's programs, unpatched; replay pre-filled to min_size with random data; heads re-drawn"),
            "bytes": "XLA 'bytes accessed' counts whole operands of gathers / scatters: not a traffic estimate",
        },
    }
    result["total_s"] = time.perf_counter() - started
    write_result(out, result)
    return result


if __name__ == "__main__":
    main()
