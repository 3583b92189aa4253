#!/usr/bin/env python3
"""CartPole learning benchmark: env steps and wall-clock until the eval mean first reaches 195.

Runs ``scripts/train.py`` (the default ``cartpole`` preset) once per seed, each in a fresh
process so every seed pays its own compile time, and reads the run's metrics. CartPole-v0
episodes are capped at 200 steps; an evaluation is the mean return of 10 greedy episodes.

    python benchmarks/cartpole.py                  # 3 seeds, 5,000 env steps each
    python benchmarks/cartpole.py --seeds 0 1 2 3 4 --steps 10000

Prints a table and writes ``benchmarks/results/cartpole_<machine>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

from benchmarks.harness import RESULTS, ROOT, write_result
from dreamer.logger import read_metrics

THRESHOLD = 195.0
# LightZero's EfficientZero, stock CartPole config, one seed, measured on this machine kind
# (2-core CPU): about 12.5 minutes and about 10,000 env steps to first reach 195.
PEER = {"name": "LightZero EfficientZero (stock CartPole config, 1 seed)", "env_steps": 10_000, "wall_clock_s": 750}


def run_seed(seed: int, steps: int, run_root: str, extra: list[str]) -> dict:
    run_dir = os.path.join(run_root, f"seed_{seed}")
    cmd = [
        sys.executable, str(ROOT / "scripts" / "train.py"),
        "--seed", str(seed), "--steps", str(steps), "--run-dir", run_dir,
        "--no-progress", "--no-tensorboard", *extra,
    ]
    start = time.time()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.time() - start
    if proc.returncode != 0:
        raise RuntimeError(f"seed {seed} failed:\n{proc.stderr[-3000:]}")
    evals = [r for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "eval/return_mean" in r]
    reached = next((r for r in evals if r["eval/return_mean"] >= THRESHOLD), None)
    with open(os.path.join(run_dir, "summary.json")) as f:
        run_clock = json.load(f)["wall_time"]
    startup = max(wall - run_clock, 0.0)  # interpreter, imports and env creation before the run clock starts
    return {
        "seed": seed,
        "reached_195": reached is not None,
        "env_steps_to_195": reached["env_steps"] if reached else None,
        # from process launch: start-up plus the run clock (which includes every compile)
        "wall_clock_to_195_s": round(startup + reached["time"], 1) if reached else None,
        "startup_s": round(startup, 1),
        "final_eval_return": evals[-1]["eval/return_mean"] if evals else None,
        "best_eval_return": max(r["eval/return_mean"] for r in evals) if evals else None,
        "env_steps": evals[-1]["env_steps"] if evals else None,
        "process_wall_clock_s": round(wall, 1),
        "curve": [(r["env_steps"], r["time"], r["eval/return_mean"]) for r in evals],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=5_000, help="env steps per seed")
    parser.add_argument("--out", default=str(RESULTS))
    parser.add_argument("--tag", default="cpu", help="suffix of the JSON file name")
    parser.add_argument("--keep-runs", default=None, help="keep run directories here")
    args, extra = parser.parse_known_args()

    run_root = args.keep_runs or tempfile.mkdtemp(prefix="cartpole_bench_")
    rows = []
    for seed in args.seeds:
        row = run_seed(seed, args.steps, run_root, extra)
        rows.append(row)
        print(f"seed {seed}: steps to 195 = {row['env_steps_to_195']}, time to 195 = {row['wall_clock_to_195_s']} s, "
              f"final = {row['final_eval_return']}", flush=True)

    all_reached = all(r["reached_195"] for r in rows)
    target = {
        "every_seed_within_5000_steps": all_reached and all(r["env_steps_to_195"] <= 5000 for r in rows),
        "every_seed_within_180_s": all_reached and all(r["wall_clock_to_195_s"] <= 180 for r in rows),
    }
    result = {
        "benchmark": "cartpole",
        "threshold": THRESHOLD,
        "preset": "cartpole",
        "extra_args": extra,
        "steps_per_seed": args.steps,
        "seeds": rows,
        "target": target,
        "peer": PEER,
    }
    table = (["seed", "steps to 195", "time to 195 (s)", "final return", "best"],
             [[r["seed"], r["env_steps_to_195"], r["wall_clock_to_195_s"], r["final_eval_return"], r["best_eval_return"]]
              for r in rows])
    write_result(os.path.join(args.out, f"cartpole_{args.tag}.json"), result, table)
    print(f"peer: {PEER['name']}: ~{PEER['env_steps']} steps, ~{PEER['wall_clock_s']} s")
    print(f"target (5,000 steps and 3 minutes, every seed): {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
