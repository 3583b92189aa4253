#!/usr/bin/env python3
"""Runs side by side: R seeds vmapped in one program (``agents.loop.train_runs``) against the
same R seeds trained one after another, on a pure JAX env.

    python benchmarks/side_by_side.py                          # minatar preset, MinAtar/Breakout, 8 runs
    python benchmarks/side_by_side.py --runs 2 4 8 --chunks 40
    python benchmarks/side_by_side.py --preset minatar --set network.hidden=64 --set network.latent_dim=32

For each R (and R = 1) this opens the runs with the loop's own ``open_run`` and drives its
fused steps (act, env step, store, and the train calls owed at the replay ratio, one compiled
chunk at a time): the acting-only chunks up to ``replay.min_size`` first (they compile both
chunk programs), then ``--chunks`` training chunks timed as a whole, then one evaluation of
every run. Throughput is env steps per second summed over the runs, updates likewise; the
speed-up of R side by side is its throughput over R = 1's (R runs one after another have the
throughput of one). It also projects a whole run of ``loop.env_steps`` at the measured
rates: R runs one after another (R compiles, R x the steps) against one group.

Prints a table and writes ``benchmarks/results/side_by_side_<preset>_<game>.json`` with the
machine and commit. What the numbers mean: ``benchmarks/README.md``, "Runs side by side".
"""

from __future__ import annotations

import math
import sys
import tempfile
import time

import jax

import agents.envs
from agents.efficientzero import make_agent
from agents.efficientzero.presets import get_preset
from agents.loop import open_run
from benchmarks.harness import RESULTS, Parser, apply_overrides, machine, write_result
from dreamer.config import to_dict


def parse(argv):
    p = Parser(prog="side_by_side.py", description=__doc__.split("\n")[0])
    p.add_argument("--preset", default="minatar")
    p.add_argument("--env", default="MinAtar/Breakout")
    p.add_argument("--runs", type=int, nargs="+", default=[8], help="group sizes to time beside one run (default 8)")
    p.add_argument("--chunks", type=int, default=30, help="training chunks timed per group (default 30)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.FIELD=VALUE",
                   help="config overrides (JSON values), e.g. network.hidden=[64]")
    p.add_argument("--out", default=None, help="JSON path (default benchmarks/results/side_by_side_<preset>_<game>.json)")
    args = p.parse_args(argv)
    if min(args.runs) < 2 or args.chunks < 1:
        p.error("--runs takes group sizes >= 2 and --chunks a count >= 1")
    try:
        cfg = get_preset(args.preset)
        cfg = cfg.replace(env=cfg.env.__class__(**{**cfg.env.__dict__, "id": args.env}))
        overrides = {}
        for item in args.set:
            key, _, value = item.partition("=")
            import json

            overrides[key] = json.loads(value) if value[:1] in "[{0123456789-tfn" else value
            if isinstance(overrides[key], list):
                overrides[key] = tuple(overrides[key])
        cfg = apply_overrides(cfg, overrides)
    except (ValueError, KeyError) as e:
        p.error(str(e))
    if not agents.envs.is_functional(cfg.env.id):
        p.error(f"{cfg.env.id} is stepped on the host: runs side by side need a pure JAX env (MinAtar/<Game>)")
    args.cfg, args.overrides = cfg, overrides
    return args


def time_group(cfg, runs: int, chunks: int) -> dict:
    """Opens ``runs`` seeds of ``cfg`` as one group (one plain run for 1) and times its chunks."""
    with tempfile.TemporaryDirectory() as tmp:
        cfgs = [cfg.replace(seed=s) for s in range(runs)]
        dirs = [f"{tmp}/seed_{s}" for s in range(runs)]
        t0 = time.perf_counter()
        run = open_run(cfgs if runs > 1 else cfgs[0], make_agent, agents.envs.make, dirs if runs > 1 else dirs[0],
                       progress=False, tensorboard=False)
        steps = run._fused_steps()
        while run.counters.updates == 0:  # acting-only chunks, then the first training chunk
            next(steps)
        jax.block_until_ready(run.state)
        startup = time.perf_counter() - t0
        env0, upd0, t0 = run.counters.env_steps, run.counters.updates, time.perf_counter()
        for _ in range(chunks):
            next(steps)
        jax.block_until_ready(run.state)
        elapsed = time.perf_counter() - t0
        env_steps, updates = run.counters.env_steps - env0, run.counters.updates - upd0
        t0 = time.perf_counter()
        run.evaluate()  # compiles the evaluation program
        eval_first = time.perf_counter() - t0
        t0 = time.perf_counter()
        run.evaluate()
        eval_s = time.perf_counter() - t0
        run.close()
    return {"runs": runs, "startup_s": startup, "timed_s": elapsed, "env_steps_per_run": env_steps,
            "updates_per_run": updates, "env_steps_per_s": runs * env_steps / elapsed,
            "updates_per_s": runs * updates / elapsed, "eval_compile_s": max(eval_first - eval_s, 0.0),
            "eval_s": eval_s}


def projection(cfg, one: dict, group: dict) -> dict:
    """Minutes for ``group["runs"]`` whole runs: one after another (each its start-up, steps
    at one run's rate and evaluations) against side by side."""
    budget, r = cfg.loop.env_steps, group["runs"]
    evals = math.ceil(budget / cfg.loop.eval_every)

    def minutes(g, runs_in_program):
        steps_s = g["env_steps_per_s"] / runs_in_program  # per run
        return (g["startup_s"] + g["eval_compile_s"] + budget / steps_s + evals * g["eval_s"]) / 60

    sequential = r * minutes(one, 1)
    side = minutes(group, r)
    return {"one_after_another_min": sequential, "side_by_side_min": side, "speedup": sequential / side}


def main(argv=None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    cfg = args.cfg
    one = time_group(cfg, 1, args.chunks)
    print(f"1 run: {one['env_steps_per_s']:.0f} env steps/s, {one['updates_per_s']:.1f} updates/s", flush=True)
    rows, groups = [], []
    for r in args.runs:
        g = time_group(cfg, r, args.chunks)
        g["throughput_speedup"] = g["env_steps_per_s"] / one["env_steps_per_s"]
        g["projection"] = projection(cfg, one, g)
        groups.append(g)
        print(f"{r} runs: {g['env_steps_per_s']:.0f} env steps/s ({g['throughput_speedup']:.2f}x)", flush=True)
    for g in [one, *groups]:
        p = g.get("projection", {})
        rows.append([g["runs"], f"{g['env_steps_per_s']:.0f}", f"{g['updates_per_s']:.1f}",
                     f"{g.get('throughput_speedup', 1.0):.2f}x", f"{g['startup_s']:.0f}", f"{g['eval_s']:.1f}",
                     f"{p['one_after_another_min']:.0f}" if p else "", f"{p['side_by_side_min']:.0f}" if p else "",
                     f"{p['speedup']:.2f}x" if p else ""])
    header = ["runs", "env steps/s (all runs)", "updates/s (all runs)", "throughput vs 1 run", "start-up s",
              "evaluation s", f"{cfg.loop.env_steps:,}-step runs one after another, min",
              "side by side, min", "whole-run speed-up"]
    game = cfg.env.id.split("/")[-1]
    out = args.out or RESULTS / f"side_by_side_{cfg.preset}_{game}.json"
    write_result(out, {"preset": cfg.preset, "env": cfg.env.id, "overrides": args.overrides, "chunks": args.chunks,
                       "config": to_dict(cfg), "one_run": one, "groups": groups, "machine": machine()},
                 (header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
