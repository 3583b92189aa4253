#!/usr/bin/env python3
"""Does the tiny Atari agent learn? ``atari-debug`` on one game on this CPU, against random play.

    python benchmarks/atari_debug.py                          # Boxing, 15,000 agent steps
    python benchmarks/atari_debug.py --game Breakout --steps 20000 --episodes 32

Trains the ``atari-debug`` preset (64x64 gray frames, small networks, 4 simulations)
with ``scripts/train.py`` in a run directory (launching it again resumes the run), then
plays ``--episodes`` evaluation games with the trained agent and the same number with a
uniformly random policy on identical evaluation envs (same seeds, same episode cap, no
reward clipping), and reports both means with a 95% interval on their difference
(rliable's bootstrap, each policy's games resampled on their own). Prints a table and
writes ``benchmarks/results/atari_debug_<game>.json`` and a learning-curve PNG beside it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import time

import numpy as np

from benchmarks.atari100k.aggregate import interval_estimates
from benchmarks.harness import RESULTS, ROOT, write_result


def bootstrap_difference(a, b, reps: int = 10_000, seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of mean(a) - mean(b), each side resampled on its own."""
    columns = [np.asarray(x, float).reshape(-1, 1) for x in (a, b)]
    (lo,), (hi,) = interval_estimates(columns, lambda x, y: np.array([x.mean() - y.mean()]), reps, seed=seed)
    return float(lo), float(hi)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--game", default="Boxing")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=15_000, help="agent steps of training")
    parser.add_argument("--episodes", type=int, default=32, help="evaluation games per policy")
    parser.add_argument("--run-dir", default=None, help="default: runs/atari-debug-<game>-s<seed>")
    parser.add_argument("--out", default=str(RESULTS))
    args, extra = parser.parse_known_args()
    run_dir = args.run_dir or str(ROOT / "runs" / f"atari-debug-{args.game}-s{args.seed}")

    start = time.time()
    train = [sys.executable, str(ROOT / "scripts" / "train.py"), "--preset", "atari-debug", "--env", args.game,
             "--seed", str(args.seed), "--steps", str(args.steps), "--run-dir", run_dir, "--no-progress",
             "--loop.eval_every", str(max(args.steps // 10, 1)), *extra]
    code = subprocess.call(train, cwd=ROOT)
    if code != 0:
        return code
    train_wall = time.time() - start

    import jax
    import jax.numpy as jnp

    from agents.loop import Trainer, evaluate, make_envs
    from dreamer.learner import ActOutput
    from dreamer.logger import read_metrics

    trainer = Trainer(_load_config(run_dir), run_dir, progress=False, tensorboard=False, log=False)
    cfg = trainer.cfg
    eval_cfg = dataclasses.replace(cfg, env=dataclasses.replace(cfg.env, eval_episodes=args.episodes,
                                                                  num_eval_envs=min(args.episodes, 8)))
    num_actions = trainer.envs.num_actions

    def random_act(params, rng, obs, temperature):
        u = jax.random.uniform(rng, (obs.shape[0], num_actions))
        zeros = jnp.zeros(obs.shape[0])
        return ActOutput(jnp.argmax(u, -1), u, zeros, zeros)

    results = {}
    for name, act in (("agent", trainer._eval_act), ("random", jax.jit(random_act))):
        envs = make_envs(eval_cfg, evaluation=True, seed=cfg.seed + 20_000)  # identical envs for both
        t0 = time.time()
        returns = evaluate(act, trainer.state.params, envs, args.episodes, jax.random.PRNGKey(7), cfg.seed + 20_000)
        results[name] = {"returns": returns, "mean": float(np.mean(returns)), "std": float(np.std(returns)),
                         "seconds": round(time.time() - t0, 1)}
    lo, hi = bootstrap_difference(results["agent"]["returns"], results["random"]["returns"])
    curve = [(r["env_steps"], r["eval/return_mean"]) for r in read_metrics(os.path.join(run_dir, "metrics.jsonl"))
             if "eval/return_mean" in r]

    verdict = "above random" if lo > 0 else "not distinguishable from random" if hi >= 0 else "below random"

    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    record = {
        "benchmark": "atari_debug",
        "game": args.game,
        "seed": args.seed,
        "preset": "atari-debug",
        "extra_args": extra,
        "env_steps": summary["env_steps"],
        "updates": summary["updates"],
        "train_wall_clock_s": round(summary["wall_time"], 1),
        "this_invocation_train_s": round(train_wall, 1),
        "eval_protocol": {"episodes": args.episodes, "max_agent_steps_per_game": cfg.env.eval_max_episode_steps,
                          "reward_clipping": False, "greedy": "argmax of the search policy"},
        "agent": results["agent"],
        "random": results["random"],
        "difference_ci95": [lo, hi],
        "verdict": verdict,
        "curve": curve,
    }
    table = (["policy", "games", "mean return", "std"],
             [[name, len(r["returns"]), f"{r['mean']:.2f}", f"{r['std']:.2f}"] for name, r in results.items()])
    path = write_result(os.path.join(args.out, f"atari_debug_{args.game}.json"), record, table)
    print(f"agent - random: {results['agent']['mean'] - results['random']['mean']:+.2f}, 95% CI [{lo:+.2f}, {hi:+.2f}]: {verdict}")
    _plot(record, path.with_suffix(".png"))
    return 0


def _load_config(run_dir: str):
    from dreamer.config import from_dict

    with open(os.path.join(run_dir, "config.json")) as f:
        return from_dict(json.load(f))


def _plot(record: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    if record["curve"]:
        steps, values = zip(*record["curve"])
        ax.plot(steps, values, marker="o", label="agent (periodic eval)")
    ax.axhline(record["random"]["mean"], color="gray", ls="--", label="random policy")
    ax.errorbar([record["env_steps"]], [record["agent"]["mean"]], yerr=[record["agent"]["std"]], fmt="s", color="C3",
                label=f"agent, final ({len(record['agent']['returns'])} games)")
    ax.set_xlabel("agent steps")
    ax.set_ylabel("return (capped games)")
    ax.set_title(f"atari-debug on {record['game']} (CPU)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
