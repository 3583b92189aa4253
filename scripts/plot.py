#!/usr/bin/env python3
"""Draw learning curves of one or more runs to a PNG.

    python scripts/plot.py runs/cartpole-*/ --out curves.png
    python scripts/plot.py RUN_DIR --x time --metrics eval/return_mean loss/total

Each run directory's ``metrics.jsonl`` is read; one panel per metric, one line per run.
"""

from __future__ import annotations

import argparse
import os
import sys

from dreamer.logger import read_metrics


def plot_runs(run_dirs: list[str], out: str, metrics: list[str], x: str = "env_steps") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for run in run_dirs:
        records = read_metrics(os.path.join(run, "metrics.jsonl"))
        label = os.path.basename(os.path.normpath(run))
        for ax, name in zip(axes[0], metrics):
            points = [(r[x], r[name]) for r in records if name in r and x in r]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, label=label, marker="." if len(points) < 30 else None)
    for ax, name in zip(axes[0], metrics):
        ax.set_title(name)
        ax.set_xlabel({"env_steps": "env steps", "time": "wall-clock (s)", "updates": "updates"}.get(x, x))
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("runs", nargs="+", help="run directories (each with metrics.jsonl)")
    parser.add_argument("--out", default="curves.png")
    parser.add_argument("--x", default="env_steps", choices=["env_steps", "time", "updates"])
    parser.add_argument("--metrics", nargs="+", default=["eval/return_mean", "loss/total"])
    args = parser.parse_args(argv)
    missing = [r for r in args.runs if not os.path.exists(os.path.join(r, "metrics.jsonl"))]
    if missing:
        print(f"plot.py: error: no metrics.jsonl in {', '.join(missing)}", file=sys.stderr)
        return 2
    print(plot_runs(args.runs, args.out, args.metrics, args.x))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
