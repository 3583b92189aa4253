#!/usr/bin/env python3
"""Evaluate a run's latest checkpoint: whole episodes, greedy search policy, results to JSON.

    python scripts/evaluate.py RUN_DIR                     # episodes from the run's config
    python scripts/evaluate.py RUN_DIR --episodes 32 --out eval.json

For Atari runs the evaluation envs play whole games with unclipped rewards, capped at
27,000 agent steps (the Atari-100k protocol, ``agents/envs/atari.py``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("run_dir")
    parser.add_argument("--episodes", type=int, default=None, help="default: the config's env.eval_episodes")
    parser.add_argument("--envs", type=int, default=None, help="parallel eval envs (default: config's)")
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", default=None, help="JSON path (default: RUN_DIR/eval.json)")
    args = parser.parse_args(argv)

    import jax
    import numpy as np

    import agents.envs
    from agents.efficientzero import make_agent
    from agents.loop import EVAL_SEED_OFFSET, evaluate, restore_params
    from dreamer.checkpoint import CheckpointError
    from dreamer.config import from_dict
    from dreamer.logger import git_commit

    config_path = os.path.join(args.run_dir, "config.json")
    if not os.path.exists(config_path):
        print(f"evaluate.py: error: {args.run_dir!r} is not a run directory (no config.json)", file=sys.stderr)
        return 2
    with open(config_path) as f:
        cfg = from_dict(json.load(f))
    for name in ("episodes", "envs"):
        value = getattr(args, name)
        if value is not None and value < 1:
            print(f"evaluate.py: error: --{name} must be >= 1, got {value}", file=sys.stderr)
            return 2
    episodes = args.episodes or cfg.env.eval_episodes
    env_cfg = dataclasses.replace(cfg.env, eval_episodes=episodes,
                                  num_eval_envs=args.envs or min(episodes, cfg.env.num_eval_envs))
    eval_envs = agents.envs.make(env_cfg, "eval", cfg.seed + EVAL_SEED_OFFSET)
    agent = make_agent(cfg, eval_envs.spec)
    try:
        params, counters = restore_params(agent, cfg, args.run_dir)
    except CheckpointError as e:
        print(f"evaluate.py: error: {e}", file=sys.stderr)
        return 2
    start = time.time()
    returns = evaluate(jax.jit(agent.greedy), params, eval_envs, episodes, jax.random.PRNGKey(args.seed), args.seed)
    result = {
        "game": cfg.env.id,
        "preset": cfg.preset,
        "seed": cfg.seed,
        "env_steps": counters["env_steps"],
        "updates": counters["updates"],
        "episode_returns": returns,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "episodes": len(returns),
        "eval_seconds": round(time.time() - start, 1),
        "commit": git_commit(),
        "machine": f"{os.uname().nodename} ({', '.join(str(d) for d in jax.devices())})",
    }
    out = args.out or os.path.join(args.run_dir, "eval.json")
    with open(out, "w") as f:
        json.dump(result, f, indent=2)
    print(f"{cfg.env.id}: mean return {result['mean_return']:.1f} over {len(returns)} episodes -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
