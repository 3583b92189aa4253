#!/usr/bin/env python3
"""Train an EfficientZero agent.

    python scripts/train.py                         # the CartPole default
    python scripts/train.py --env Acrobot-v1        # any discrete-action gymnasium env
    python scripts/train.py --preset debug --steps 400 --run-dir runs/try
    python scripts/train.py --help                  # every config field as a flag

The run directory holds config.json (resolved config), run.json (commit, jax, devices),
metrics.jsonl, TensorBoard events (tb/), checkpoints/ and summary.json.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from typing import Annotated, Optional

import tyro

from agents.cli import fail, parse_config


@dataclasses.dataclass(frozen=True)
class TrainFlags:
    """This script's own flags (hyphenated aliases: see agents/cli.py)."""

    run_dir: Annotated[Optional[str], tyro.conf.arg(aliases=("--run-dir",), metavar="DIR", help_behavior_hint="")] = None  # run directory (default: runs/<preset>-<env>-s<seed>-<time>)
    no_progress: Annotated[bool, tyro.conf.arg(aliases=("--no-progress",))] = False  # no progress bar
    no_tensorboard: Annotated[bool, tyro.conf.arg(aliases=("--no-tensorboard",))] = False  # no TensorBoard event files


def main(argv=None) -> int:
    prog = "train.py"
    cfg, args = parse_config(sys.argv[1:] if argv is None else argv, prog, __doc__.split("\n")[0], TrainFlags)

    from dreamer import runtime

    runtime.configure()  # persistent compilation cache; XLA command buffers on a GPU

    # Validate the env before any compute is spent.
    import agents.envs
    from agents.efficientzero import check_env
    from agents.envs import EnvError

    try:
        check_env(cfg)
    except EnvError as e:
        fail(prog, str(e))

    run_dir = args.run_dir or os.path.join(
        "runs", f"{cfg.preset}-{cfg.env.id.replace('/', '_')}-s{cfg.seed}-{time.strftime('%Y%m%d-%H%M%S')}"
    )
    try:
        os.makedirs(run_dir, exist_ok=True)
        probe = os.path.join(run_dir, ".write_test")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        fail(prog, f"cannot write run directory {run_dir!r}: {e.strerror or e}")

    from agents.efficientzero import make_agent
    from agents.loop import NonFiniteLossError, open_run
    from dreamer.checkpoint import CheckpointError

    try:
        run = open_run(cfg, make_agent, agents.envs.make, run_dir, progress=not args.no_progress,
                       tensorboard=not args.no_tensorboard)
        print(f"run directory: {run_dir}", file=sys.stderr)  # after a refused resume, the error is the only line
        if run.resumed:
            print(f"resuming from {run.counters.env_steps} env steps, {run.counters.updates} updates", file=sys.stderr)
        counters = run.run()
    except CheckpointError as e:
        fail(prog, f"cannot resume from {run_dir!r}: {e}")
    except NonFiniteLossError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 3
    print(
        f"done: {counters.env_steps} env steps, {counters.updates} updates, "
        f"last eval return {counters.last_eval_return:.1f}, {counters.wall_time:.0f}s",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
