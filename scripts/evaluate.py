#!/usr/bin/env python3
"""Evaluate a run's latest checkpoint: whole episodes, greedy search policy, results to JSON.

    python scripts/evaluate.py RUN_DIR                     # episodes from the run's config
    python scripts/evaluate.py RUN_DIR --episodes 32 --out eval.json

For Atari runs the evaluation envs play whole games with unclipped rewards, capped at
27,000 agent steps (the Atari-100k protocol, ``agents/envs/atari.py``).
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from typing import Annotated, Optional

import tyro

from agents.cli import parse_flags


@dataclasses.dataclass(frozen=True)
class EvalFlags:
    """What to evaluate and where the results go."""

    run_dir: Annotated[str, tyro.conf.Positional, tyro.conf.arg(metavar="RUN_DIR")]  # a run directory written by train.py
    episodes: Annotated[Optional[int], tyro.conf.arg(metavar="INT", help_behavior_hint="")] = None  # whole episodes to play (default: the config's env.eval_episodes)
    envs: Annotated[Optional[int], tyro.conf.arg(metavar="INT", help_behavior_hint="")] = None  # parallel eval envs (default: the config's env.num_eval_envs, at most --episodes)
    seed: int = 12345  # seed of the evaluation envs and search
    out: Annotated[Optional[str], tyro.conf.arg(metavar="PATH", help_behavior_hint="")] = None  # JSON path (default: RUN_DIR/eval.json)

    def __post_init__(self):
        for name in ("episodes", "envs"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name} must be >= 1, got {value}")


def main(argv=None) -> int:
    args = parse_flags(EvalFlags, sys.argv[1:] if argv is None else argv, "evaluate.py", __doc__.split("\n")[0])

    import jax
    import numpy as np

    from dreamer import runtime

    runtime.configure()

    import agents.envs
    from agents.efficientzero import make_agent
    from agents.loop import EVAL_SEED_OFFSET, evaluate, evaluate_functional, restore_params
    from dreamer.checkpoint import CheckpointError
    from dreamer.config import from_dict
    from dreamer.logger import git_commit

    config_path = os.path.join(args.run_dir, "config.json")
    if not os.path.exists(config_path):
        print(f"evaluate.py: error: {args.run_dir!r} is not a run directory (no config.json)", file=sys.stderr)
        return 2
    with open(config_path) as f:
        cfg = from_dict(json.load(f))
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
    if eval_envs.functional is not None:  # a pure JAX env: the whole evaluation is one compiled program
        evaluation = evaluate_functional(agent.greedy, params, eval_envs.functional, episodes,
                                         jax.random.PRNGKey(args.seed), args.seed, on_state=agent.acts_on == "env_state")
    else:
        evaluation = evaluate(jax.jit(agent.greedy), params, eval_envs, episodes, jax.random.PRNGKey(args.seed),
                              args.seed)
    returns = evaluation.returns
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
        "capped_games": int(sum(evaluation.capped)),
        "action_counts": evaluation.action_counts.tolist(),
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
