#!/usr/bin/env python3
"""Learning benchmark: train a preset on an env once per seed and report when and how well it learned.

    python benchmarks/learning.py --preset cartpole --threshold 195          # CartPole-v0, seeds 0 1 2, 5,000 steps
    python benchmarks/learning.py --preset atari-debug --env RoadRunner --seeds 0 --steps 8000 --vs-random \\
        -- --planner.num_simulations 8 --loop.replay_ratio 0.5               # flags after -- go to train.py

Each seed runs ``scripts/train.py`` in a fresh process (:func:`run_seed`), ``--vs-random`` then
pits each trained agent against a uniformly random policy (:func:`versus_random`). Prints a table
and writes ``benchmarks/results/learning_<preset>_<env>.json`` and the evaluation curves beside it
as a PNG. What it reports and how: ``benchmarks/README.md``, "learning".
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from agents.plots import plot_runs
from benchmarks.harness import RESULTS, TRAIN_SCRIPT, Parser, run_train, uniform_random_policy, write_result
from dreamer.logger import read_metrics

VS_RANDOM_SEED_OFFSET = 20_000  # evaluation envs seeded apart from training and the run's own evaluations
VS_RANDOM_MAX_ENVS = 8


def run_seed(seed: int, args, extra: list[str], run_dir: str) -> dict:
    """Trains one seed in a fresh process; exits like train.py (its error line) if it fails."""
    cmd = [sys.executable, str(TRAIN_SCRIPT), "--preset", args.preset, "--seed", str(seed), "--steps", str(args.steps),
           "--run-dir", run_dir, "--no-progress", "--no-tensorboard", *(["--env", args.env] if args.env else []), *extra]
    launch = time.time()
    code, wall, error = run_train(cmd, run_dir)
    if code != 0:
        print(f"learning.py: seed {seed}: {error}", file=sys.stderr)
        raise SystemExit(code)
    evals = [r for r in read_metrics(os.path.join(run_dir, "metrics.jsonl")) if "eval/return_mean" in r]
    summary = json.loads(Path(run_dir, "summary.json").read_text())
    # The run clock starts just before config.json is written: what comes before is start-up
    # (interpreter, imports, envs, agent init).
    startup = os.path.getmtime(os.path.join(run_dir, "config.json")) - launch
    reached = next((r for r in evals if args.threshold is not None and r["eval/return_mean"] >= args.threshold), None)
    return {
        "seed": seed,
        "run_dir": run_dir,
        "env_steps": summary["env_steps"],
        "updates": summary["updates"],
        "reached_threshold": reached is not None if args.threshold is not None else None,
        "env_steps_to_threshold": reached["env_steps"] if reached else None,
        "wall_clock_to_threshold_s": round(startup + reached["time"], 1) if reached else None,
        "startup_s": round(startup, 1),
        "final_eval_return": evals[-1]["eval/return_mean"] if evals else None,
        "best_eval_return": max(r["eval/return_mean"] for r in evals) if evals else None,
        "process_wall_clock_s": round(wall, 1),
        "curve": [(r["env_steps"], r["time"], r["eval/return_mean"]) for r in evals],
    }


def fire_fraction(actions: np.ndarray, action_set) -> float | None:
    """Share of ``actions`` (indices into ``action_set``) whose name has FIRE in it; None
    for a game without FIRE actions (or an env that does not name its actions)."""
    fire = [i for i, name in enumerate(action_set or ()) if "FIRE" in name]
    return float(np.isin(np.asarray(actions), fire).mean()) if fire and np.size(actions) else None


def versus_random(run_dir: str, episodes: int) -> dict:
    """The run's trained agent against a uniformly random policy on identical evaluation envs."""
    import jax

    import agents.envs
    from agents.efficientzero import make_agent
    from agents.loop import evaluate, restore_params
    from benchmarks.atari100k.aggregate import interval_estimates
    from dreamer.config import from_dict

    cfg = from_dict(json.loads(Path(run_dir, "config.json").read_text()))
    env_cfg = dataclasses.replace(cfg.env, eval_episodes=episodes, num_eval_envs=min(episodes, VS_RANDOM_MAX_ENVS))
    seed = cfg.seed + VS_RANDOM_SEED_OFFSET
    envs = {name: agents.envs.make(env_cfg, "eval", seed) for name in ("agent", "random")}  # reset with the same seed
    spec, action_set = envs["agent"].spec, getattr(envs["agent"], "action_set", None)
    agent = make_agent(cfg, spec)
    params, counters = restore_params(agent, cfg, run_dir)
    greedy, actions = jax.jit(agent.greedy), []

    def agent_policy(p, rng, obs):
        out = greedy(p, rng, obs)
        actions.append(np.asarray(out.action))
        return out

    results = {}
    for name, policy in (("agent", agent_policy), ("random", uniform_random_policy(spec.num_actions))):
        t0 = time.time()
        returns = evaluate(policy, params, envs[name], episodes, jax.random.PRNGKey(7), seed).returns
        envs[name].close()
        results[name] = {"returns": returns, "mean": float(np.mean(returns)), "std": float(np.std(returns)),
                         "seconds": round(time.time() - t0, 1)}
    # 95% percentile interval of the difference of the means, each policy's games resampled on their own (rliable)
    columns = [np.asarray(results[name]["returns"], float).reshape(-1, 1) for name in ("agent", "random")]
    (lo,), (hi,) = interval_estimates(columns, lambda x, y: np.array([x.mean() - y.mean()]), 10_000)
    return {
        **results,
        "env_steps": counters["env_steps"],
        "difference_ci95": [float(lo), float(hi)],
        "verdict": "above random" if lo > 0 else "below random" if hi < 0 else "not distinguishable from random",
        "fire_fraction": fire_fraction(np.concatenate(actions) if actions else [], action_set),
        "action_set": list(action_set) if action_set else None,
        "protocol": {"episodes": episodes, "envs": env_cfg.num_eval_envs, "seed": seed,
                     "max_agent_steps_per_game": cfg.env.eval_max_episode_steps, "reward_clipping": False,
                     "agent": "greedy: argmax of the search policy, latest checkpoint",
                     "fire_fraction": "share of the agent's actions over every evaluation step that press FIRE"},
    }


def parse(argv: list[str]):
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = Parser(prog="learning.py", description=__doc__.split("\n")[0])
    parser.add_argument("--preset", default="cartpole", help="agents/efficientzero/presets.py name (default cartpole)")
    parser.add_argument("--env", default=None, help="env id (default: the preset's)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=5_000, help="env steps per seed")
    parser.add_argument("--threshold", type=float, default=None, help="report when the eval mean first reaches this")
    parser.add_argument("--vs-random", action="store_true", help="trained agent vs a uniformly random policy after training")
    parser.add_argument("--episodes", type=int, default=32, help="evaluation games per policy for --vs-random")
    parser.add_argument("--run-root", default=None, help="run directories go here, one per seed (default: a new temporary directory)")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/learning_<preset>_<env>.json)")
    args, extra = parser.parse_args(argv[:cut]), argv[cut + 1:]
    from agents.efficientzero.presets import get_preset

    try:
        args.env_id = args.env or get_preset(args.preset).env.id
    except ValueError as e:
        parser.error(str(e))
    if args.steps < 1 or args.episodes < 1:
        parser.error("--steps and --episodes must be >= 1")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    name = f"{args.preset}_{args.env_id.replace('/', '-')}"
    args.out = parser.writable(args.out or RESULTS / f"learning_{name}.json")
    args.run_root = args.run_root or tempfile.mkdtemp(prefix="learning_")
    taken = [d for s in args.seeds if os.path.isdir(d := os.path.join(args.run_root, f"seed_{s}")) and os.listdir(d)]
    if taken:
        parser.error(f"{taken[0]} already holds a run (train.py would resume it); choose another --run-root")
    return args, extra


def main(argv=None) -> int:
    args, extra = parse(sys.argv[1:] if argv is None else list(argv))
    print(f"runs in {args.run_root}", flush=True)
    rows = []
    for seed in args.seeds:
        row = run_seed(seed, args, extra, os.path.join(args.run_root, f"seed_{seed}"))
        if args.vs_random:
            row["vs_random"] = versus_random(row["run_dir"], args.episodes)
        rows.append(row)
        print(f"seed {seed}: {row['env_steps']} env steps, final eval {row['final_eval_return']}"
              + (f", steps to {args.threshold:g}: {row['env_steps_to_threshold']}" if args.threshold is not None else "")
              + (f", vs random: {row['vs_random']['verdict']}" if args.vs_random else ""), flush=True)

    header = ["seed", "env steps", "final eval", "best eval"]
    if args.threshold is not None:
        header += [f"steps to {args.threshold:g}", f"time to {args.threshold:g} (s)"]
    if args.vs_random:
        header += ["agent", "random", "agent - random, 95% CI", "FIRE"]
    table = []
    for r in rows:
        cells = [r["seed"], r["env_steps"], r["final_eval_return"], r["best_eval_return"]]
        if args.threshold is not None:
            cells += [r["env_steps_to_threshold"], r["wall_clock_to_threshold_s"]]
        if args.vs_random:
            v = r["vs_random"]
            lo, hi = v["difference_ci95"]
            cells += [f"{v['agent']['mean']:.2f} ± {v['agent']['std']:.2f}", f"{v['random']['mean']:.2f} ± {v['random']['std']:.2f}",
                      f"{v['agent']['mean'] - v['random']['mean']:+.2f} [{lo:+.2f}, {hi:+.2f}]: {v['verdict']}",
                      "-" if v["fire_fraction"] is None else f"{100 * v['fire_fraction']:.0f}%"]
        table.append(cells)
    record = {"benchmark": "learning", "preset": args.preset, "env": args.env_id, "steps_per_seed": args.steps,
              "threshold": args.threshold, "extra_args": extra, "run_root": args.run_root, "seeds": rows}
    if args.threshold is not None:
        record["seeds_reaching_threshold"] = sum(bool(r["reached_threshold"]) for r in rows)
    path = write_result(args.out, record, (header, table))
    try:
        random_means = [r["vs_random"]["random"]["mean"] for r in rows] if args.vs_random else []
        references = [("random policy", float(np.mean(random_means)))] if random_means else []
        plot_runs([r["run_dir"] for r in rows], str(path.with_suffix(".png")), metrics=["eval/return_mean"],
                         threshold=args.threshold, references=references)
        print(f"wrote {path.with_suffix('.png')}")
    except (ImportError, OSError, ValueError) as e:  # the JSON is the result; the figure is a convenience
        print(f"learning.py: no figure: {e}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
