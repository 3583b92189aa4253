#!/usr/bin/env python3
"""Train an EfficientZero agent.

    python scripts/train.py                         # the CartPole default
    python scripts/train.py --env Acrobot-v1        # any discrete-action gymnasium env
    python scripts/train.py --preset debug --steps 400 --run-dir runs/try
    python scripts/train.py --help                  # every config field as a flag
    python scripts/train.py --preset minatar --env MinAtar/Breakout --seeds 0 1 2   # 3 seeds, one program

The run directory holds config.json (resolved config), run.json (commit, jax, devices),
metrics.jsonl, TensorBoard events (tb/), checkpoints/ and summary.json. With ``--seeds`` on a
pure JAX env (MinAtar) the seeds train side by side, vmapped in one compiled program, each in
its own run directory ``<run-dir>/seed_<S>`` (``agents.loop.train_runs``).
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
    no_progress: Annotated[bool, tyro.conf.arg(aliases=("--no-progress",))] = False  # no progress bar or progress lines
    no_tensorboard: Annotated[bool, tyro.conf.arg(aliases=("--no-tensorboard",))] = False  # no TensorBoard event files
    no_plot: Annotated[bool, tyro.conf.arg(aliases=("--no-plot",))] = False  # no curves.png at the end
    seeds: Annotated[tuple[int, ...], tyro.conf.arg(metavar="INT [INT ...]", help_behavior_hint="")] = ()  # train these seeds side by side in one program (pure JAX envs: MinAtar), each in <run-dir>/seed_<S>; instead of --seed
    devices: Annotated[Optional[int], tyro.conf.arg(metavar="INT", help_behavior_hint="")] = None  # devices to train on, data-parallel (default: all of them; 1: the single-device program)
    coordinator: Annotated[Optional[str], tyro.conf.arg(metavar="HOST:PORT", help_behavior_hint="")] = None  # multi-host: process 0's address, or "auto" on a cluster JAX knows (SLURM); also DREAMER_COORDINATOR
    num_processes: Annotated[Optional[int], tyro.conf.arg(aliases=("--num-processes",), metavar="INT", help_behavior_hint="")] = None  # multi-host: how many processes; also DREAMER_NUM_PROCESSES
    process_id: Annotated[Optional[int], tyro.conf.arg(aliases=("--process-id",), metavar="INT", help_behavior_hint="")] = None  # multi-host: this process's id, 0 to num_processes - 1; also DREAMER_PROCESS_ID


def main(argv=None) -> int:
    prog = "train.py"
    cfg, args = parse_config(sys.argv[1:] if argv is None else argv, prog, __doc__.split("\n")[0], TrainFlags)

    from dreamer import runtime, sharding

    try:  # before anything touches a device
        sharding.initialize(args.coordinator, args.num_processes, args.process_id)
    except (ValueError, RuntimeError) as e:
        fail(prog, str(e).splitlines()[0])
    runtime.configure()  # persistent compilation cache; XLA command buffers on a GPU

    # Validate the env before any compute is spent.
    import agents.envs
    from agents.efficientzero import check_env
    from agents.envs import EnvError

    try:
        check_env(cfg)
    except EnvError as e:
        fail(prog, str(e))
    if args.seeds:
        if any(a == "--seed" or a.startswith("--seed=") for a in (sys.argv[1:] if argv is None else argv)):
            fail(prog, "--seed and --seeds: give one of them")
        if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
            fail(prog, f"--seeds: expected distinct seeds >= 0, got {' '.join(map(str, args.seeds))}")
        if not agents.envs.is_functional(cfg.env.id):
            fail(prog, f"--seeds trains seeds side by side on a pure JAX env (MinAtar/<Game>); {cfg.env.id} is stepped "
                       f"on the host: train one seed at a time with --seed")

    from agents.loop import check_mesh

    if args.devices is not None and args.devices < 1:
        fail(prog, f"--devices must be >= 1, got {args.devices}")
    try:
        mesh = check_mesh(sharding.make_mesh(args.devices), [cfg.replace(seed=s) for s in args.seeds] or [cfg])
    except ValueError as e:
        fail(prog, f"--devices: {e}")
    stem = f"{cfg.preset}-{cfg.env.id.replace('/', '_')}" + ("" if args.seeds else f"-s{cfg.seed}")
    run_dir = args.run_dir or os.path.join("runs", f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}")
    cfgs = [cfg.replace(seed=s) for s in args.seeds] or [cfg]
    run_dirs = [os.path.join(run_dir, f"seed_{s}") for s in args.seeds] or [run_dir]
    for d in run_dirs:
        try:
            os.makedirs(d, exist_ok=True)
            probe = os.path.join(d, ".write_test")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as e:
            fail(prog, f"cannot write run directory {d!r}: {e.strerror or e}")

    from agents.efficientzero import make_agent
    from agents.loop import NonFiniteLossError, open_run
    from dreamer.checkpoint import CheckpointError

    try:
        run = open_run(cfgs if args.seeds else cfg, make_agent, agents.envs.make, run_dirs if args.seeds else run_dir,
                       progress=not args.no_progress, tensorboard=not args.no_tensorboard, mesh=mesh)
        print(f"run director{'ies' if args.seeds else 'y'}: {', '.join(run_dirs)}", file=sys.stderr)
        if run.resumed:
            print(f"resuming from {run.counters.env_steps} env steps, {run.counters.updates} updates", file=sys.stderr)
        all_counters = run.run_all()
    except CheckpointError as e:
        fail(prog, f"cannot resume from {run_dir!r}: {e}")
    except NonFiniteLossError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 3
    for c, counters, d in zip(cfgs, all_counters, run_dirs):
        if args.seeds:
            print(f"seed {c.seed}:", file=sys.stderr)
        report(c, counters, d, plot=not args.no_plot)
    return 0


def report(cfg, counters, run_dir: str, plot: bool = True) -> None:
    """The end of a run in a few lines: the threshold, the final evaluation, where things are."""
    minutes, seconds = divmod(int(round(counters.wall_time)), 60)
    lines = [f"done in {minutes}m{seconds:02d}s: {counters.env_steps:,} env steps, {counters.updates:,} updates"
             + (f" (stopped early: {counters.stopped})" if counters.stopped else "")]
    for threshold in cfg.loop.thresholds:
        hit = counters.first_reached.get(f"{threshold:g}")
        lines.append(f"eval return first reached {threshold:g} at {hit['env_steps']:,} env steps, {hit['seconds']:.0f} s"
                     if hit else f"eval return never reached {threshold:g}")
    if counters.evaluations:
        note = "" if cfg.env.eval_episodes >= 10 else f" (only {cfg.env.eval_episodes} games: a smoke test, not a score)"
        lines.append(f"final eval return {counters.last_eval_return:.1f} over {cfg.env.eval_episodes} games{note}; "
                     f"best {counters.best_eval_return:.1f}")
    lines.append(f"run directory: {run_dir}")
    if plot:
        try:
            from agents.plots import plot_runs

            out = os.path.join(run_dir, "curves.png")
            plot_runs([run_dir], out, metrics=["eval/return_mean"], threshold=(cfg.loop.thresholds or [None])[0])
            lines.append(f"learning curve: {out}  (more: python scripts/plot.py {run_dir})")
        except Exception as e:  # a plot is a convenience; the run is done either way
            lines.append(f"no plot ({type(e).__name__}: {e})")
    print("\n".join(lines), file=sys.stderr)


if __name__ == "__main__":
    raise SystemExit(main())
