#!/usr/bin/env python3
"""MinAtar-100k: a preset on the five MinAtar games for 100k env steps, against DQN, PPO and random.

    python benchmarks/minatar.py Breakout      # trains seeds 0 1 2 that are not finished, writes results/minatar_Breakout.json
    python benchmarks/minatar.py all           # the five games in turn
    python benchmarks/minatar.py --table       # only aggregates: results/minatar.json, a markdown table, results/minatar.png
    python benchmarks/minatar.py Breakout --steps 1024 --seeds 0 --run-root /tmp/runs --results-dir /tmp/res \\
        -- --loop.eval_every 512               # a smoke test; flags after -- go to scripts/train.py

Each seed is one ``scripts/train.py`` process in ``<run-root>/<preset>/<Game>/seed_<S>``, its
launches logged in ``launches.json`` there. The command is resumable (a finished seed is not
trained again, an unfinished one is relaunched and resumes from its checkpoint) and refuses a
directory holding a run of another budget or config before anything runs. The runs, the JSONs,
the statistics (:data:`STATISTICS`), the verdicts (:data:`MUST_SHOW`) and why:
``benchmarks/README.md``, "MinAtar-100k".
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

import numpy as np

from agents.envs.minatar import GAMES, PREFIX
from benchmarks.harness import RESULTS, ROOT, TRAIN_SCRIPT, Parser, run_train, uniform_random_policy, write_result
from benchmarks.tables import num

PROG = "minatar.py"
BUDGET = 100_000  # env steps of the benchmark
EVAL_GAMES = 30  # games of a final evaluation
MIN_SEEDS = 3
WALL_TARGET_MIN = 15.0  # minutes per seed, from process launch
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_RUN_ROOT = ROOT / "benchmarks" / "minatar" / "runs"
LAUNCHES = "launches.json"
BOOTSTRAP_REPS = 2_000

# Published scores per game. DQN: Young & Tian 2019 (MinAtar), read off its learning curves.
REFERENCES: dict[str, dict[str, float | None]] = {
    "Asterix": {"dqn_0.5M": 1.0, "dqn_5M": 17.0, "ppo_10M": 15.0},
    "Breakout": {"dqn_0.5M": 8.0, "dqn_5M": 10.0, "ppo_10M": 28.0},
    "Freeway": {"dqn_0.5M": 42.5, "dqn_5M": 50.0, "ppo_10M": 58.0},
    "Seaquest": {"dqn_0.5M": 0.5, "dqn_5M": 20.0, "ppo_10M": None},
    "SpaceInvaders": {"dqn_0.5M": 25.0, "dqn_5M": 43.0, "ppo_10M": 131.0},
}
REFERENCE_RANGES = {"Freeway": {"dqn_0.5M": [40.0, 45.0]}}  # where the plot reads as a range (point: its middle)
REFERENCE_NAMES = {"dqn_0.5M": "DQN@0.5M", "dqn_5M": "DQN@5M", "ppo_10M": "PPO@10M"}
REFERENCE_SOURCES = {
    "dqn_0.5M": "DQN after 0.5M frames (5x our env steps): Young & Tian 2019, 'MinAtar' (arXiv:1903.03176), "
                "learning curves over 30 seeds with sticky actions 0.1, read off the plot (approximate); "
                "Freeway reads 40-45 (42.5 used); Seaquest before MinAtar's oxygen fix",
    "dqn_5M": "DQN after 5M frames (50x our env steps), the end of the same curves; Seaquest before the oxygen fix",
    "ppo_10M": "PPO after 10M steps, gymnax-blines (RobertTLange/gymnax-blines) on gymnax's ports, which have no "
               "sticky actions; no Seaquest result",
}
PEER_MUST_SHOW = {"ahead_of_every_peer": 4, "ci_above_every_peer": 3}
VERDICTS = {"reaches_dqn_0.5M": "dqn_0.5M", "reaches_dqn_5M": "dqn_5M"}
MUST_SHOW = {"reaches_dqn_0.5M": 4, "reaches_dqn_5M": 2, "every_seed_beats_random": len(GAMES)}
NOTES = [
    "No MuZero-family agent (MuZero, EfficientZero, Gumbel or Sampled MuZero) has published MinAtar numbers: "
    "the references are DQN and PPO, trained on 5x to 100x more env steps than ours.",
    "Our MinAtar envs are gymnax's ports of the five games with MinAtar's sticky actions (probability 0.1) "
    "added by us (agents/envs/minatar.py); the DQN references come from MinAtar itself with sticky actions 0.1, "
    "the PPO references from gymnax's ports without them.",
    "DQN references are read off the MinAtar paper's learning curves: good to the plot's resolution, no better. "
    "They come from the original MinAtar (all 6 actions, no time limit, averages of training episodes); gymnax's "
    "ports use each game's minimal action set and a 1,000-step time limit (2,500 for Freeway), and we score greedy evaluation games.",
    "Peer rows (benchmarks/peers.py): rejax's DQN, PPO and PQN trained on the very same envs (gymnax ports, "
    "sticky actions 0.1), the same 100k env steps and seeds, scored by the same greedy 30-game evaluation.",
    f"Wall-clock is per seed, from launching train.py to its exit (start-up and compiles included), summed over "
    f"launches when a seed was resumed; the target is {WALL_TARGET_MIN:g} minutes. Seeds run one after another on "
    f"the machine named in each game's JSON, whose load average is recorded there.",
]
STATISTICS = {
    "final_score": "a seed's final greedy evaluation: the mean return of the games of its last evaluation, "
                   "at the end of training (greedy: argmax of the search policy)",
    "mean_ci95": f"95% percentile interval of the mean over seeds: rliable stratified bootstrap over the seeds' "
                 f"final scores ({BOOTSTRAP_REPS:,} resamples); with 3 seeds it cannot reach past the lowest and "
                 f"highest seed",
    "mean_ci95_t": "Student t 95% interval of the mean over seeds (n - 1 degrees of freedom), kept beside the "
                   "bootstrap as the wider, parametric view",
    "beats_random": "Welch's 95% t interval on (seed's final mean - random mean), from the means, standard "
                    "deviations and game counts, lies above 0",
    "reaches": "the mean over seeds is at or above the reference score",
}
# Config fields in which a finished or resumed run may differ from the one asked for (clocks).
IGNORED_DIFFERENCES = ("seed", "loop.eval_every", "loop.log_every_s", "loop.checkpoint_every_s",
                       "loop.keep_checkpoints", "loop.thresholds", "loop.stop_when_held")
# train.py flags that minatar.py sets itself (spelled with "-"; "_" is read as "-"), and what to use instead.
RESERVED = {"--seed": "--seeds", "--env": "the game", "--env.id": "the game", "--run-dir": "--run-root",
            "--preset": "--preset", "--steps": "--steps", "--loop.env-steps": "--steps", "--no-progress": None,
            "--no-tensorboard": None, "--no-plot": None}


def result_path(results_dir: str | os.PathLike, preset: str, game: str | None = None) -> Path:
    """``minatar[_<preset>][_<Game>].json``: a game's result, or the table without ``game``."""
    stem = "minatar" if preset == "minatar" else f"minatar_{preset}"
    return Path(results_dir) / f"{stem}{'_' + game if game else ''}.json"


def _read_json(path: Path):
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _env_steps(run_dir: Path) -> int:
    return int((_read_json(run_dir / "summary.json") or {}).get("env_steps", 0))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


@dataclasses.dataclass
class Plan:
    """One seed to report: its train.py arguments and config, directory and state (new, resume or finished)."""

    game: str
    seed: int
    argv: list[str]
    cfg: Any
    run_dir: Path
    state: str


def run_state(run_dir: Path, cfg, refuse: Callable[[str], NoReturn]) -> str:
    """``new``, ``resume`` or ``finished``; ``refuse`` (one line) when ``run_dir`` holds a run of
    another budget or config than ``cfg``."""
    from dreamer.config import config_differences, to_dict

    config_path = run_dir / "config.json"
    if not config_path.is_file():
        return "new"
    try:
        old = json.loads(config_path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        refuse(f"{config_path} is unreadable ({e}): remove {run_dir} or choose another --run-root")
    budget, old_budget = cfg.loop.env_steps, old.get("loop", {}).get("env_steps")
    if old_budget != budget:
        refuse(f"{run_dir} holds a run of {old_budget} env steps, not {budget}: "
               f"remove it or choose another --run-root")
    differ = config_differences(old, json.loads(json.dumps(to_dict(cfg))), IGNORED_DIFFERENCES)  # tuples as lists
    if differ:
        k, was, asked = differ[0]
        refuse(f"{run_dir} holds a run of another config ({k}: {was!r}, asked {asked!r}"
               + (f", and {len(differ) - 1} more" if len(differ) > 1 else "")
               + "): remove it or choose another --run-root")
    return "finished" if _env_steps(run_dir) >= budget else "resume"


def parse(argv: list[str]):
    """``(args, plans)``: the arguments (flags after ``--`` in ``args.extra``) and one
    :class:`Plan` per game and seed, none with ``--table``; every refusal comes here, as one line."""
    cut = argv.index("--") if "--" in argv else len(argv)
    parser = Parser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("game", nargs="?", help=f"a MinAtar game ({', '.join(GAMES)}) or all")
    parser.add_argument("--table", action="store_true", help="only aggregate the game results that exist")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="seeds (default 0 1 2)")
    parser.add_argument("--steps", type=int, default=None, help=f"env steps per seed (default: the preset's, {BUDGET:,})")
    parser.add_argument("--preset", default="minatar", help="agents/efficientzero/presets.py name (default minatar)")
    parser.add_argument("--run-root", default=None, help=f"run directories (default {DEFAULT_RUN_ROOT.relative_to(ROOT)})")
    parser.add_argument("--results-dir", default=None, help="where the JSONs and the figure go (default benchmarks/results)")
    args = parser.parse_args(argv[:cut])
    args.extra = argv[cut + 1:]

    from agents.efficientzero.presets import get_preset

    try:
        get_preset(args.preset)
    except ValueError as e:
        parser.error(str(e))
    if args.table:
        if args.game is not None:
            parser.error("--table aggregates the results that exist: give it no game")
        if args.seeds is not None or args.steps is not None or args.run_root is not None or args.extra:
            parser.error("--table takes only --preset and --results-dir")
    elif args.game is None:
        parser.error(f"name a game ({', '.join(GAMES)}), all, or --table")
    args.results_dir = Path(args.results_dir or RESULTS)
    parser.writable(result_path(args.results_dir, args.preset))
    if args.table:
        return args, []

    from agents.cli import parse_config
    from agents.envs.base import EnvError
    from agents.envs.minatar import game_name

    try:
        games = list(GAMES) if args.game.lower() == "all" else [game_name(args.game)]
    except EnvError:
        parser.error(f"unknown game {args.game!r}: choose one of {', '.join(GAMES)} or all")
    args.seeds = list(DEFAULT_SEEDS) if args.seeds is None else args.seeds
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds repeats a seed: {args.seeds}")
    if min(args.seeds) < 0:
        parser.error(f"--seeds must be >= 0, got {min(args.seeds)}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    for token in args.extra:
        flag = token.split("=", 1)[0]
        if flag.replace("_", "-") in RESERVED:
            own_flag = RESERVED[flag.replace("_", "-")]
            parser.error(f"{flag} after -- is set by {PROG}" + (f": use {own_flag}" if own_flag else ""))
    args.run_root = Path(args.run_root or DEFAULT_RUN_ROOT)
    plans = []
    for game in games:
        for seed in args.seeds:
            train_argv = ["--preset", args.preset, "--env", PREFIX + game, "--seed", str(seed),
                          *(["--steps", str(args.steps)] if args.steps is not None else []), *args.extra]
            cfg, _ = parse_config(train_argv, PROG, "")  # bad flags after -- end here, one line
            run_dir = args.run_root / args.preset / game / f"seed_{seed}"
            plans.append(Plan(game, seed, train_argv, cfg, run_dir, run_state(run_dir, cfg, parser.error)))
    return args, plans


def train_seed(plan: Plan) -> None:
    """Launches (or relaunches) train.py on the seed's run directory and records the launch;
    exits with train.py's code and its error line if it fails."""
    cmd = [sys.executable, str(TRAIN_SCRIPT), "--run-dir", str(plan.run_dir), "--no-progress", "--no-tensorboard",
           "--no-plot", *plan.argv]
    launches = _read_json(plan.run_dir / LAUNCHES) or []
    launch = {"started": _now(), "env_steps_before": _env_steps(plan.run_dir), "command": cmd[1:]}
    t0, code, error = time.time(), None, ""
    try:
        code, _, error = run_train(cmd, plan.run_dir)
    finally:  # an interrupted launch is recorded too (exit code null), with the time it ran
        launch.update(wall_s=round(time.time() - t0, 1), exit_code=code, env_steps_after=_env_steps(plan.run_dir))
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        (plan.run_dir / LAUNCHES).write_text(json.dumps([*launches, launch], indent=1) + "\n")
    if code != 0:
        print(f"{PROG}: {plan.game} seed {plan.seed}: {error}", file=sys.stderr)
        raise SystemExit(code)


def seed_result(plan: Plan) -> dict:
    """What a finished seed's run directory says: final evaluation, curve, wall-clock."""
    from dreamer.logger import read_metrics

    run_dir = plan.run_dir
    # A resumed run restarts from its last checkpoint and may log an evaluation again: the last one counts.
    by_step = {r["env_steps"]: r for r in read_metrics(str(run_dir / "metrics.jsonl")) if "eval/return_mean" in r}
    evals = [by_step[k] for k in sorted(by_step)]
    summary = _read_json(run_dir / "summary.json") or {}
    launches = _read_json(run_dir / LAUNCHES) or []
    last = evals[-1] if evals and evals[-1]["env_steps"] >= plan.cfg.loop.env_steps else None
    final = None
    if last is not None:
        actions = [last[f"eval/action_{a}"] for a in range(len(last)) if f"eval/action_{a}" in last]
        final = {"env_steps": last["env_steps"], "return_mean": last["eval/return_mean"],
                 "return_std": last["eval/return_std"], "episodes": int(last["eval/episodes"]),
                 "capped_fraction": last.get("eval/capped_fraction"), "action_fractions": actions}
    walls = [entry.get("wall_s") for entry in launches]
    wall_min = round(sum(walls) / 60, 2) if walls and None not in walls else None
    return {
        "seed": plan.seed,
        "run_dir": str(run_dir),
        "env_steps": summary.get("env_steps"),
        "updates": summary.get("updates"),
        "final_eval": final,
        "best_eval_return": max((r["eval/return_mean"] for r in evals), default=None),
        "wall_clock_min": wall_min,
        "within_wall_target": None if wall_min is None else wall_min <= WALL_TARGET_MIN,
        "launches": len(launches),
        "run_clock_min": round(summary["wall_time"] / 60, 2) if "wall_time" in summary else None,
        "curve": [[r["env_steps"], r.get("time"), r["eval/return_mean"], r.get("eval/return_std")] for r in evals],
    }


def random_protocol(cfg) -> dict:
    """What the random row depends on: the evaluation envs' config, games and seeds."""
    from agents.loop import EVAL_SEED_OFFSET
    from dreamer.config import to_dict

    return json.loads(json.dumps({"policy": "uniformly random actions", "env": to_dict(cfg)["env"],
                                  "episodes": cfg.env.eval_episodes, "env_seed": EVAL_SEED_OFFSET, "rng_seed": 0}))


def compute_random(cfg, protocol: dict) -> dict:
    """Plays ``protocol["episodes"]`` games with uniformly random actions on the evaluation envs."""
    import jax

    import agents.envs
    from agents.loop import evaluate

    envs = agents.envs.make(cfg.env, "eval", protocol["env_seed"])
    t0 = time.time()
    try:
        result = evaluate(uniform_random_policy(envs.spec.num_actions), None, envs, protocol["episodes"],
                          jax.random.PRNGKey(protocol["rng_seed"]), protocol["env_seed"])
    finally:
        envs.close()
    metrics = result.metrics()
    return {
        "protocol": protocol,
        "returns": [float(r) for r in result.returns],
        "mean": metrics["eval/return_mean"],
        "std": metrics["eval/return_std"],
        "episodes": metrics["eval/episodes"],
        "capped_fraction": metrics["eval/capped_fraction"],
        "sticky_action_prob": getattr(getattr(envs, "functional", None), "sticky_action_prob", None),
        "seconds": round(time.time() - t0, 1),
        "computed": _now(),
    }


def mean_ci_bootstrap(scores: Sequence[float], reps: int = BOOTSTRAP_REPS) -> list[float]:
    """95% percentile interval of the mean (rliable stratified bootstrap, one task)."""
    from benchmarks.atari100k.aggregate import interval_estimates

    column = np.asarray(scores, float).reshape(-1, 1)
    (lo,), (hi,) = interval_estimates([column], lambda x: np.array([x.mean()]), reps)
    return [float(lo), float(hi)]


def mean_ci_t(scores: Sequence[float]) -> list[float] | None:
    """Student t 95% interval of the mean; None for fewer than 2 scores."""
    from scipy import stats

    x = np.asarray(scores, float)
    if len(x) < 2:
        return None
    half = stats.t.ppf(0.975, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return [float(x.mean() - half), float(x.mean() + half)]


def welch_interval(mean_a: float, std_a: float, n_a: int, mean_b: float, std_b: float, n_b: int) -> list[float]:
    """Welch's 95% t interval on ``mean_a - mean_b`` from the means, the population standard
    deviations (``np.std``, as the metrics log them) and the counts; a side of one game adds
    no variance."""
    from scipy import stats

    sides = [(std**2 / (n - 1), n) for std, n in ((std_a, n_a), (std_b, n_b)) if n > 1]  # (squared standard error, n)
    diff, se = mean_a - mean_b, math.sqrt(sum(e for e, _ in sides))
    if se == 0:
        return [float(diff), float(diff)]
    df = se**4 / sum(e**2 / (n - 1) for e, n in sides)
    half = stats.t.ppf(0.975, df) * se
    return [float(diff - half), float(diff + half)]


def protocol_issues(record: dict) -> list[str]:
    """Why a game's result does not count towards the must-show verdicts (empty: it counts)."""
    issues = []
    if record.get("budget_env_steps") != BUDGET:
        issues.append(f"{record.get('budget_env_steps')} env steps, not {BUDGET:,}")
    if record.get("extra_args"):
        issues.append("train.py flags after --: " + " ".join(map(str, record["extra_args"])))
    seeds = record.get("seeds", [])
    if len(seeds) < MIN_SEEDS:
        issues.append(f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}, fewer than {MIN_SEEDS}")
    missing = [s["seed"] for s in seeds if not s.get("final_eval")]
    if missing:
        issues.append(f"no final evaluation for seed {', '.join(map(str, missing))}")
    if any(s["final_eval"]["episodes"] < EVAL_GAMES for s in seeds if s.get("final_eval")):
        issues.append(f"final evaluations of fewer than {EVAL_GAMES} games")
    if not record.get("random"):
        issues.append("no random row")
    return issues


def summarize_game(record: dict) -> dict:
    """A game's scores, intervals and verdicts from its result JSON (the seeds and the random row)."""
    game, random, all_seeds = record["game"], record.get("random"), record.get("seeds", [])
    seeds = [s for s in all_seeds if s.get("final_eval")]
    finals = [s["final_eval"]["return_mean"] for s in seeds]
    mean = float(np.mean(finals)) if finals else None
    vs_random = []
    for s in seeds if random else []:
        f = s["final_eval"]
        lo, hi = welch_interval(f["return_mean"], f["return_std"], f["episodes"],
                                random["mean"], random["std"], random["episodes"])
        vs_random.append({"seed": s["seed"], "difference": f["return_mean"] - random["mean"], "ci95": [lo, hi],
                          "beats_random": lo > 0})
    walls = [s.get("wall_clock_min") for s in all_seeds]
    references = REFERENCES[game]
    return {
        "game": game, "seeds": [s["seed"] for s in seeds], "final_returns": finals, "mean": mean,
        "mean_ci95": mean_ci_bootstrap(finals) if finals else None, "mean_ci95_t": mean_ci_t(finals),
        "random_mean": random["mean"] if random else None,
        "vs_random": vs_random,
        "every_seed_beats_random": (bool(vs_random) and len(vs_random) == len(all_seeds)
                                    and all(p["beats_random"] for p in vs_random)),
        **{verdict: None if mean is None or references[ref] is None else mean >= references[ref]
           for verdict, ref in VERDICTS.items()},
        "wall_clock_min": walls,
        "seeds_within_wall_target": sum(w is not None and w <= WALL_TARGET_MIN for w in walls),
        "protocol_issues": protocol_issues(record),
    }


def must_show(summaries: dict[str, dict]) -> dict:
    """The must-show counts over the games run to protocol; verdicts stay null until all five are."""
    complete = [g for g in GAMES if g in summaries and not summaries[g]["protocol_issues"]]
    out: dict[str, Any] = {
        "complete_games": complete,
        "missing_games": [g for g in GAMES if g not in summaries],
        "off_protocol_games": {g: summaries[g]["protocol_issues"] for g in GAMES
                               if g in summaries and summaries[g]["protocol_issues"]},
    }
    decided = len(complete) == len(GAMES)
    for verdict, needed in MUST_SHOW.items():
        count = sum(bool(summaries[g][verdict]) for g in complete)
        out[verdict] = {"count": count, "of": len(complete), "needed": needed, "met": count >= needed if decided else None}
    out["all_met"] = all(out[v]["met"] for v in MUST_SHOW) if decided else None
    return out


def versus_peers(summary: dict, peers: dict | None) -> dict | None:
    """Ours against each peer at the same env steps: the difference of the mean final scores
    over seeds, with Welch's 95% interval over the seeds' final scores (each side's seeds)."""
    if not peers or not summary["final_returns"]:
        return None
    ours = np.asarray(summary["final_returns"], float)
    out = {}
    for name, peer in peers["peers"].items():
        theirs = np.asarray([p["final_eval"]["mean"] for p in peer["seeds"]], float)
        ci = welch_interval(ours.mean(), ours.std(), ours.size, theirs.mean(), theirs.std(), theirs.size)
        out[name] = {"peer_mean": float(theirs.mean()), "peer_finals": theirs.tolist(),
                     "difference": float(ours.mean() - theirs.mean()), "difference_ci95": ci,
                     "env_steps": peers["env_steps"], "ahead": bool(ours.mean() > theirs.mean()),
                     "ci_above_zero": ci[0] > 0}
    return {"peers": out, "ahead_of_every_peer": all(v["ahead"] for v in out.values()),
            "ci_above_every_peer": all(v["ci_above_zero"] for v in out.values()),
            "env_steps_match": all(v["env_steps"] == BUDGET for v in out.values())}


def peer_lines(comparisons: dict[str, dict]) -> list[str]:
    lines = []
    for game, c in comparisons.items():
        parts = [f"{n} {v['peer_mean']:.2f} (ours - {n} {v['difference']:+.2f} [{v['difference_ci95'][0]:+.2f}, "
                 f"{v['difference_ci95'][1]:+.2f}])" for n, v in c["peers"].items()]
        off = "" if c["env_steps_match"] else " (* peers not at the 100k budget: not counted)"
        lines.append(f"peers on {game}: " + "; ".join(parts) + off)
    counted = [c for c in comparisons.values() if c["env_steps_match"]]
    for verdict, needed in PEER_MUST_SHOW.items():
        count = sum(bool(c[verdict]) for c in counted)
        state = "open" if len(counted) < len(GAMES) else "met" if count >= needed else "NOT met"
        lines.append(f"must-show: games {verdict.replace('_', ' ')}: {count} of {len(counted)} (need {needed} of "
                     f"{len(GAMES)}): {state}")
    return lines


def _ref(game: str, key: str) -> str:
    value, span = REFERENCES[game][key], REFERENCE_RANGES.get(game, {}).get(key)
    if value is None:
        return "—"
    return f"{value:g}" + (f" ({span[0]:g}-{span[1]:g})" if span else "")


def _yes(flag: bool | None) -> str:
    return "—" if flag is None else "yes" if flag else "no"


TABLE_HEADER = ["game", "final return per seed", "mean [95% CI, bootstrap]", "random", "DQN@0.5M", "DQN@5M",
                "PPO@10M", "≥ DQN@0.5M", "≥ DQN@5M", "every seed > random", f"wall-clock per seed (min; ≤ {WALL_TARGET_MIN:g})"]


def table_row(game: str, summary: dict) -> list[str]:
    lo_hi, walls = summary["mean_ci95"], summary["wall_clock_min"]
    return [
        game + (" *" if summary["protocol_issues"] else ""),
        " / ".join(num(x) for x in summary["final_returns"]) or "—",
        f"{num(summary['mean'])} [{num(lo_hi[0])}, {num(lo_hi[1])}]" if lo_hi else "—",
        num(summary["random_mean"], 2),
        _ref(game, "dqn_0.5M"), _ref(game, "dqn_5M"), _ref(game, "ppo_10M"),
        _yes(summary["reaches_dqn_0.5M"]), _yes(summary["reaches_dqn_5M"]),
        (_yes(summary["every_seed_beats_random"])
         + f" ({sum(p['beats_random'] for p in summary['vs_random'])}/{len(summary['vs_random'])})"),
        " / ".join(num(w) for w in walls) + f" ({summary['seeds_within_wall_target']}/{len(walls)})",
    ]


def must_show_lines(verdicts: dict) -> list[str]:
    names = {"reaches_dqn_0.5M": "games reaching DQN@0.5M", "reaches_dqn_5M": "games reaching DQN@5M",
             "every_seed_beats_random": "games where every seed beats random"}
    lines = []
    for verdict, label in names.items():
        v = verdicts[verdict]
        state = "open" if v["met"] is None else "met" if v["met"] else "NOT met"
        lines.append(f"must-show: {label}: {v['count']} of {v['of']} complete games (need {v['needed']} of "
                     f"{len(GAMES)}): {state}")
    if verdicts["missing_games"]:
        lines.append(f"missing games: {', '.join(verdicts['missing_games'])}")
    for game, issues in verdicts["off_protocol_games"].items():
        lines.append(f"* {game} is off protocol (not counted): {'; '.join(issues)}")
    return lines


def draw(records: dict[str, dict], summaries: dict[str, dict], out: Path, peers: dict[str, dict] | None = None) -> Path:
    """Learning curves, one :func:`benchmarks.atari100k.aggregate.curve_panel` per game with its
    own references and random as horizontal lines."""
    from matplotlib.figure import Figure

    from benchmarks.atari100k.aggregate import curve_panel

    fig = Figure(figsize=(15, 8.6), layout="constrained")
    axes = fig.subplots(2, 3).ravel()
    budget = max([r.get("budget_env_steps") or BUDGET for r in records.values()], default=BUDGET)
    styles = {"dqn_0.5M": ("C1", "--"), "dqn_5M": ("C2", "-."), "ppo_10M": ("C3", ":")}
    for ax, game in zip(axes, GAMES):
        summary = summaries.get(game)
        lines = [(f"{REFERENCE_NAMES[key]} = {_ref(game, key)}", REFERENCES[game][key], *style)
                 for key, style in styles.items() if REFERENCES[game][key] is not None]
        if summary and summary["random_mean"] is not None:
            lines.append((f"random = {summary['random_mean']:.2f}", summary["random_mean"], "0.35", "-"))
        curves = [(np.array([p[0] for p in s["curve"]], float), np.array([p[2] for p in s["curve"]], float))
                  for s in records.get(game, {}).get("seeds", []) if s.get("curve")]
        title = game + (" (off protocol)" if summary and summary["protocol_issues"] else "")
        curve_panel(ax, title, curves, lines, BOOTSTRAP_REPS)
        for k, (name, peer) in enumerate((peers or {}).get(game, {}).get("peers", {}).items()):
            seeds = [np.array(s["curve"], float) for s in peer["seeds"]]
            mean = np.mean([c[:, 1] for c in seeds], 0)
            ax.plot(seeds[0][:, 0], mean, color=f"C{5 + k}", marker=".", lw=1.2, label=f"{name} (rejax, mean)")
        if peers and game in peers:
            ax.legend(fontsize=7)
        ax.set_xlim(0, budget * 1.02)
    axes[-1].axis("off")
    fig.suptitle("MinAtar-100k: greedy evaluation return over training (thin: single seeds; band: rliable bootstrap "
                 "over seeds; lines: published scores at 5x to 100x our samples)", fontsize=11)
    fig.savefig(out, dpi=120)
    return out


def aggregate(results_dir: Path, preset: str) -> dict:
    """Reads the game JSONs that exist, prints the table and the must-show verdicts, writes
    ``<stem>.json`` and, where any game has a result, the figure beside it."""
    records: dict[str, dict] = {}
    for game in GAMES:
        path = result_path(results_dir, preset, game)
        if path.exists():
            record = _read_json(path)
            if not isinstance(record, dict) or record.get("game") != game:
                print(f"{PROG}: skipping {path}: not a {game} result", file=sys.stderr)
                continue
            records[game] = record
    summaries = {game: summarize_game(record) for game, record in records.items()}
    verdicts = must_show(summaries)
    peers = {game: _read_json(Path(results_dir) / f"peers_{game}.json") for game in GAMES
             if (Path(results_dir) / f"peers_{game}.json").exists()}
    comparisons = {game: c for game in summaries if (c := versus_peers(summaries[game], peers.get(game)))}
    rows = [table_row(game, summaries[game]) for game in GAMES if game in summaries]
    record = {
        "benchmark": "minatar-100k",
        "preset": preset,
        "budget_env_steps": BUDGET,
        "games": {game: {"result": str(result_path(results_dir, preset, game)), "commit": records[game].get("commit"),
                         "date": records[game].get("date"), **summaries[game]} for game in summaries},
        "must_show": verdicts,
        "versus_peers": comparisons,
        "references": REFERENCES,
        "reference_ranges": REFERENCE_RANGES,
        "reference_sources": REFERENCE_SOURCES,
        "statistics": STATISTICS,
        "notes": NOTES,
    }
    path = write_result(result_path(results_dir, preset), record, (TABLE_HEADER, rows) if rows else None)
    print("\n".join([*must_show_lines(verdicts), *peer_lines(comparisons), "", *(f"note: {n}" for n in NOTES)]))
    if records:
        try:
            print(f"wrote {draw(records, summaries, path.with_suffix('.png'), peers)}")
        except (ImportError, OSError, ValueError) as e:  # the JSON is the result; the figure is a convenience
            print(f"{PROG}: no figure: {e}", file=sys.stderr)
    return record


def run_game(game: str, plans: list[Plan], args) -> dict:
    """Trains the game's unfinished seeds, then writes its result JSON."""
    budget = plans[0].cfg.loop.env_steps
    for plan in plans:
        if plan.state == "finished":
            print(f"{game} seed {plan.seed}: finished in {plan.run_dir}; not trained again", flush=True)
            continue
        verb = "resuming" if plan.state == "resume" else "training"
        print(f"{game} seed {plan.seed}: {verb} ({budget:,} env steps) in {plan.run_dir}", flush=True)
        train_seed(plan)
        if _env_steps(plan.run_dir) < budget:
            print(f"{PROG}: {game} seed {plan.seed}: stopped at {_env_steps(plan.run_dir):,} of "
                  f"{budget:,} env steps; run the same command to resume", file=sys.stderr)
            raise SystemExit(1)
    seeds = [seed_result(plan) for plan in plans]
    path = result_path(args.results_dir, args.preset, game)
    cached, protocol = (_read_json(path) or {}).get("random"), random_protocol(plans[0].cfg)
    random = cached if cached and cached.get("protocol") == protocol else compute_random(plans[0].cfg, protocol)
    print(f"{game} random policy: {random['mean']:.2f} ± {random['std']:.2f} over {random['episodes']} games"
          + (" (cached)" if random is cached else ""), flush=True)
    record = {
        "benchmark": "minatar-100k",
        "game": game,
        "env_id": PREFIX + game,
        "preset": args.preset,
        "budget_env_steps": budget,
        "seeds_requested": [p.seed for p in plans],
        "extra_args": args.extra,
        "run_root": str(args.run_root),
        "seeds": seeds,
        "random": random,
        "references": {REFERENCE_NAMES[k]: v for k, v in REFERENCES[game].items()},
        "reference_ranges": {REFERENCE_NAMES[k]: v for k, v in REFERENCE_RANGES.get(game, {}).items()},
        "reference_sources": {REFERENCE_NAMES[k]: v for k, v in REFERENCE_SOURCES.items()},
        "statistics": STATISTICS,
        "notes": NOTES,
    }
    record["summary"] = summary = summarize_game(record)
    header = ["seed", "env steps", "final eval (mean ± std, games)", "minus random [95% CI, Welch]", "beats random",
              "wall-clock (min)", f"≤ {WALL_TARGET_MIN:g} min", "launches"]
    rows = []
    for s in seeds:
        f = s["final_eval"]
        v = next((p for p in summary["vs_random"] if p["seed"] == s["seed"]), None)
        rows.append([s["seed"], s["env_steps"], f"{f['return_mean']:.2f} ± {f['return_std']:.2f} ({f['episodes']})" if f else "—",
                     f"{v['difference']:+.2f} [{v['ci95'][0]:+.2f}, {v['ci95'][1]:+.2f}]" if v else "—",
                     _yes(v["beats_random"]) if v else "—", num(s["wall_clock_min"]), _yes(s["within_wall_target"]),
                     s["launches"]])
    write_result(path, record, (header, rows))
    return record


def main(argv: list[str] | None = None) -> int:
    args, plans = parse(sys.argv[1:] if argv is None else list(argv))
    try:
        for game in dict.fromkeys(p.game for p in plans):
            run_game(game, [p for p in plans if p.game == game], args)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted; run the same command to resume", file=sys.stderr)
        return 130
    aggregate(args.results_dir, args.preset)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
