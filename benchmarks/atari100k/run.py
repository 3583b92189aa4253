#!/usr/bin/env python3
"""One Atari-100k run: train one game with one seed, then evaluate it for the aggregate.

    python -m benchmarks.atari100k.run Breakout 0                      # atari100k preset
    python -m benchmarks.atari100k.run Pong 2 --preset atari100k-gumbel
    python -m benchmarks.atari100k.run Breakout 0 --runs /scratch/runs -- --loop.log_every_s 60

A job scheduler can launch it anywhere, once per (game, seed). The run lives in
``<runs>/<preset>/<Game>/seed_<k>/``; launching the same command again resumes it from
its last checkpoint (after a pre-emption or a kill), and a finished run is only
re-evaluated if its ``eval.json`` is missing. Arguments after ``--`` go to
``scripts/train.py`` unchanged (any ``--section.field value``), e.g. ``--steps`` for a
shorter budget; such runs are flagged off-budget by the aggregate.

The final evaluation plays ``env.eval_episodes`` whole games (32 for ``atari100k``)
with unclipped rewards and writes ``eval.json``, which
``python -m benchmarks.atari100k.aggregate --runs <runs>/<preset>`` reads.
Exit codes: 0 done, 2 bad input, 3 the training run stopped on a non-finite loss.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RUNS = ROOT / "benchmarks" / "atari100k" / "results" / "runs"


def _finished(run_dir: Path) -> bool:
    """Whether the training run reached its budget (its summary counts all env steps)."""
    summary, config = run_dir / "summary.json", run_dir / "config.json"
    if not (summary.exists() and config.exists()):
        return False
    done = json.loads(summary.read_text())
    cfg = json.loads(config.read_text())
    return done.get("env_steps", 0) >= cfg["loop"]["env_steps"]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    cut = argv.index("--") if "--" in argv else len(argv)
    argv, train_extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("game", help="Atari game, e.g. Breakout, MsPacman")
    parser.add_argument("seed", type=int)
    parser.add_argument("--preset", default="atari100k")
    parser.add_argument("--runs", default=str(DEFAULT_RUNS), help="root of the run tree (default: %(default)s)")
    parser.add_argument("--episodes", type=int, default=None, help="final evaluation episodes (default: the preset's)")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)

    run_dir = Path(args.runs) / args.preset / args.game / f"seed_{args.seed}"
    if run_dir.joinpath("eval.json").exists() and _finished(run_dir):
        print(f"{run_dir}: finished and evaluated; nothing to do", file=sys.stderr)
        return 0
    train = [sys.executable, str(ROOT / "scripts" / "train.py"), "--preset", args.preset, "--env", args.game,
             "--seed", str(args.seed), "--run-dir", str(run_dir), *(["--no-progress"] if args.no_progress else []),
             *train_extra]
    if not _finished(run_dir):
        code = subprocess.call(train, cwd=ROOT)
        if code != 0:
            return code
    if not _finished(run_dir):  # stopped by a signal: the checkpoint is written; launch again to go on
        print(f"{run_dir}: training stopped before its budget; run the same command to resume", file=sys.stderr)
        return 1
    evaluate = [sys.executable, str(ROOT / "scripts" / "evaluate.py"), str(run_dir)]
    if args.episodes is not None:
        evaluate += ["--episodes", str(args.episodes)]
    return subprocess.call(evaluate, cwd=ROOT)


if __name__ == "__main__":
    raise SystemExit(main())
