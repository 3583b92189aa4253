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

import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from agents.cli import _fail, parse_config  # noqa: E402


def main(argv=None) -> int:
    prog = "train.py"

    def extra(parser):
        parser.add_argument("--run-dir", default=None, help="run directory (default: runs/<preset>-<env>-s<seed>-<time>)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")
        parser.add_argument("--no-tensorboard", action="store_true", help="no TensorBoard event files")

    cfg, args = parse_config(sys.argv[1:] if argv is None else argv, prog, __doc__.split("\n")[1], extra)

    # Validate the env before any compute is spent.
    from agents.envs.gym import EnvError
    from agents.loop import Trainer, is_atari

    try:
        if not is_atari(cfg.env.id):
            from agents.envs.gym import describe_spaces

            shape, _, _ = describe_spaces(cfg.env.id)
            if cfg.network.kind != "mlp":
                raise EnvError(f"{cfg.env.id} has vector observations {shape}; preset {cfg.preset!r} uses the {cfg.network.kind} network")
        elif cfg.network.kind != "conv":
            raise EnvError(f"{cfg.env.id} is an Atari game; preset {cfg.preset!r} uses the {cfg.network.kind} network (try --preset atari100k)")
    except EnvError as e:
        _fail(prog, str(e))

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
        _fail(prog, f"cannot write run directory {run_dir!r}: {e.strerror or e}")

    from agents.loop import NonFiniteLossError
    from dreamer.checkpoint import CheckpointError

    try:
        trainer = Trainer(cfg, run_dir, progress=not args.no_progress, tensorboard=not args.no_tensorboard)
        print(f"run directory: {run_dir}", file=sys.stderr)  # after a refused resume, the error is the only line
        if trainer.resumed:
            print(f"resuming from {trainer.counters.env_steps} env steps, {trainer.counters.updates} updates", file=sys.stderr)
        counters = trainer.run()
    except CheckpointError as e:
        _fail(prog, f"cannot resume from {run_dir!r}: {e}")
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
