#!/usr/bin/env python3
"""Dreaming as a scaling axis: real experience needed against imagined rollouts per real step.

    python benchmarks/dreaming.py                       # the whole sweep (POINTS on ENVS), then the table and plots
    python benchmarks/dreaming.py --envs CartPole-v0    # one env
    python benchmarks/dreaming.py --sims 0 4 16 --seeds 0 1    # part of the grid
    python benchmarks/dreaming.py --table               # only aggregate what has run
    python benchmarks/dreaming.py --envs MinAtar/Breakout --sims 2 --steps 2000 --run-root /tmp/d --results-dir /tmp/r

The dream compute of a run is ``S``, the search simulations per real step (acting, and the
reanalysis that re-plans stored positions when it is on): ``S = 0`` acts from the policy prior
with no search (:func:`dreamer.plan` with ``num_simulations=0``), where the MuZero family has
no policy improvement at all. For each env, each ``S`` in ``--sims`` runs three ways:

* ``learned``: the agent's own learned model, policy reanalysis off;
* ``learned+reanalyse``: the same, with stored positions re-planned (MinAtar: a sweep of the
  replay once per target period; CartPole: its preset's per-batch reanalysis);
* ``simulator`` (pure JAX envs only): the same planner searching the game's own step function
  (``planner.model="simulator"``, :class:`agents.envs.minatar.MinAtarSimulator`) with the
  learned value and prior: the bound a perfect world model gives (policy reanalysis off, as
  the replay keeps frames, not game states).

Each point is one ``scripts/train.py`` call per env: seeds vmapped in one program on MinAtar
(``--seeds``), one after another on a host env (CartPole). Runs are resumable and a finished
point is not run again. The settings of each env (:data:`ENVS`) are small on purpose, so that
the whole grid fits a working session on a 2-core CPU; they are not the MinAtar-100k preset.

Writes ``benchmarks/results/dreaming.json`` (per point and seed: the evaluation curve, the
score at each budget, env steps to the env's threshold, wall-clock) with machine and commit,
prints a table, and draws ``dreaming.png``: score against ``S`` at each budget and env steps to
the threshold against ``S`` (log axes), means over seeds with 95% t intervals. How to read
it: ``benchmarks/README.md``, "Dreaming".
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from benchmarks.harness import RESULTS, ROOT, TRAIN_SCRIPT, Parser, run_train, write_result
from benchmarks.tables import num

PROG = "dreaming.py"
SIMS = (0, 2, 4, 8, 16, 32)
DEFAULT_SEEDS = (0, 1, 2)
DEFAULT_RUN_ROOT = ROOT / "benchmarks" / "dreaming" / "runs"
KINDS = ("learned", "learned+reanalyse", "simulator")


@dataclasses.dataclass(frozen=True)
class EnvSetting:
    """One env of the sweep: its preset and flags, budget, evaluation, threshold, reanalysis."""

    preset: str
    flags: tuple[str, ...]  # train.py flags on top of the preset, for every point
    budget: int  # env steps per run
    budgets: tuple[int, ...]  # where scores are read (evaluations land on each)
    eval_every: int
    threshold: float  # the score whose first crossing gives "env steps to threshold"
    reanalyse: tuple[str, ...]  # flags that turn policy reanalysis on
    no_reanalyse: tuple[str, ...]  # flags that turn it off
    functional: bool  # a pure JAX env: seeds vmapped in one program, and the simulator kind
    why: str


# The MinAtar runs use a small world model and one update of 64 sequences per 8 real steps, so
# that three seeds of 100k env steps are a few minutes on a 2-core CPU (about 1,000 env steps/s
# with S = 16, measured with benchmarks/side_by_side.py); acting uses 16 envs. Reanalysis is a sweep
# of the replay with the target params once per target period (dreamer/reanalyze.py) with
# the same S. CartPole is the default preset; it stops once two evaluations in a row reach 195.
_MINATAR = dict(
    preset="minatar",
    flags=("--network.latent_dim", "64", "--network.hidden", "128", "--network.head_hidden", "32",
           "--network.lstm_hidden", "32", "--network.projection_hidden", "64", "--network.projection_out", "64",
           "--network.predictor_hidden", "32", "--replay.batch_size", "64", "--loop.replay_ratio", "0.125",
           "--learner.td_age_step", "30000", "--loop.epsilon_schedule", "0.5", "0.1", "1.0", "0.05"),
    budget=100_000, budgets=(25_000, 50_000, 100_000), eval_every=5_000,
    reanalyse=("--learner.reanalyze", "sweep"), no_reanalyse=("--learner.reanalyze", "batch",
                                                              "--learner.reanalyze_fraction", "0"),
    functional=True,
    why="minatar preset with a small MLP (latent 64, hidden 128), batch 64, replay ratio 0.125, epsilon 0.1 then 0.05",
)
ENVS: dict[str, EnvSetting] = {
    "MinAtar/Breakout": EnvSetting(threshold=5.0, **_MINATAR),
    "MinAtar/SpaceInvaders": EnvSetting(threshold=10.0, **_MINATAR),
    "CartPole-v0": EnvSetting(
        preset="cartpole", flags=("--loop.env_steps", "6000"), budget=6_000, budgets=(2_000, 4_000, 6_000),
        eval_every=500, threshold=195.0,
        reanalyse=("--learner.reanalyze_fraction", "1.0"), no_reanalyse=("--learner.reanalyze_fraction", "0"),
        functional=False,
        why="the cartpole preset (8 envs, replay ratio 1, per-batch reanalysis with the online params), 6,000 env "
            "steps, stopped once two evaluations in a row reach 195"),
}


@dataclasses.dataclass(frozen=True)
class Point:
    env: str
    kind: str  # one of KINDS
    sims: int

    @property
    def name(self) -> str:
        return f"{self.kind}-S{self.sims}"


def point_flags(point: Point, setting: EnvSetting, max_considered: int) -> list[str]:
    """train.py flags of one point (beyond the env's own)."""
    flags = ["--planner.num_simulations", str(point.sims),
             # Gumbel's sequential halving compares at most as many root actions as it has simulations
             "--planner.max_num_considered_actions", str(max(1, min(max_considered, point.sims)))]
    flags += list(setting.reanalyse if point.kind == "learned+reanalyse" else setting.no_reanalyse)
    if point.kind == "simulator":
        flags += ["--planner.model", "simulator"]
    return flags


def grid(envs: Sequence[str], sims: Sequence[int], kinds: Sequence[str]) -> list[Point]:
    """The points to run: every env x kind x S, without the ones that mean nothing (no
    simulator for a host env; at S = 0 there is no search to re-run or to run in a simulator)."""
    points = []
    for env in envs:
        for kind in kinds:
            if kind == "simulator" and not ENVS[env].functional:
                continue
            for s in sims:
                if kind != "learned" and s == 0:
                    continue
                points.append(Point(env, kind, s))
    return points


def run_dirs(root: Path, point: Point, seeds: Sequence[int]) -> tuple[Path, list[Path]]:
    base = root / point.env.replace("/", "_") / point.name
    return base, [base / f"seed_{s}" for s in seeds]


def _read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError):
        return None


def _done(summary: dict, budget: int) -> bool:
    return (summary.get("env_steps") or 0) >= budget or bool(summary.get("stopped"))


def finished(run_dir: Path, budget: int) -> bool:
    """The run spent its budget or stopped by its own rule."""
    return _done(_read_json(run_dir / "summary.json") or {}, budget)


def train_point(point: Point, setting: EnvSetting, seeds: Sequence[int], root: Path, steps: int | None,
                max_considered: int) -> float:
    """Runs the unfinished seeds of a point; returns the seconds spent."""
    budget = steps or setting.budget
    base, dirs = run_dirs(root, point, seeds)
    todo = [(s, d) for s, d in zip(seeds, dirs) if not finished(d, budget)]
    if not todo:
        return 0.0
    common = [sys.executable, str(TRAIN_SCRIPT), "--preset", setting.preset, "--env", point.env, *setting.flags,
              "--loop.eval_every", str(setting.eval_every), *point_flags(point, setting, max_considered),
              *(["--steps", str(steps)] if steps else []), "--no-progress", "--no-tensorboard", "--no-plot"]
    t0 = time.time()
    if setting.functional:  # one program for the seeds, resumed together
        calls = [(common + ["--seeds", *map(str, seeds), "--run-dir", str(base)], base)]
    else:
        calls = [(common + ["--seed", str(s), "--run-dir", str(d)], d) for s, d in todo]
    for cmd, log_dir in calls:
        print(f"{point.env} {point.name}: seeds {' '.join(map(str, seeds))} in {log_dir}", flush=True)
        code, wall, error = run_train(cmd, log_dir)
        if code != 0:
            raise SystemExit(f"{PROG}: {point.env} {point.name}: {error}")
    return time.time() - t0


def seed_record(run_dir: Path, setting: EnvSetting, budget: int) -> dict | None:
    """A seed's evaluation curve, its scores at the budgets, env steps to the threshold."""
    from dreamer.logger import read_metrics

    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return None
    by_step = {r["env_steps"]: r for r in read_metrics(str(path)) if "eval/return_mean" in r}
    curve = [[k, by_step[k]["eval/return_mean"]] for k in sorted(by_step)]
    summary = _read_json(run_dir / "summary.json") or {}
    stopped = bool(summary.get("stopped"))
    scores = {}
    for b in budgets_of(setting, budget):
        # the evaluation due at b (the loop's chunks can put it a few steps past b); a run that
        # stopped early because its evaluation held the threshold keeps its last score
        due = [v for k, v in curve if b <= k < b + setting.eval_every]
        scores[str(b)] = due[0] if due else (curve[-1][1] if stopped and curve and curve[-1][0] < b else None)
    hit = next((k for k, v in curve if v >= setting.threshold), None)
    return {"run_dir": str(run_dir), "curve": curve, "scores": scores, "steps_to_threshold": hit,
            "env_steps": summary.get("env_steps"), "stopped": stopped, "wall_time_s": summary.get("wall_time"),
            "finished": _done(summary, budget)}


def mean_ci(values: Sequence[float]) -> dict:
    """Mean with a Student t 95% interval over seeds (None where fewer than two values)."""
    from scipy import stats

    x = np.asarray([v for v in values if v is not None], float)
    if x.size == 0:
        return {"mean": None, "ci95": None, "n": 0}
    if x.size < 2:
        return {"mean": float(x.mean()), "ci95": None, "n": 1}
    half = stats.t.ppf(0.975, x.size - 1) * x.std(ddof=1) / math.sqrt(x.size)
    return {"mean": float(x.mean()), "ci95": [float(x.mean() - half), float(x.mean() + half)], "n": int(x.size)}


def budgets_of(setting: EnvSetting, budget: int) -> list[int]:
    """The env's budgets within ``budget`` (the budget itself when a short run reaches none)."""
    return [b for b in setting.budgets if b <= budget] or [budget]


def summarize_point(point: Point, seeds: list[dict], setting: EnvSetting, budget: int) -> dict:
    scores = {str(b): mean_ci([s["scores"].get(str(b)) for s in seeds]) for b in budgets_of(setting, budget)}
    # seeds that spent the budget without reaching the threshold count at the budget (a lower
    # bound on their steps); a run still going that has not reached it yet counts nowhere
    known = [s for s in seeds if s["steps_to_threshold"] is not None or s["finished"]]
    reached = [s["steps_to_threshold"] for s in known]
    censored = [r if r is not None else budget for r in reached]
    return {"env": point.env, "kind": point.kind, "sims": point.sims, "seeds": seeds, "scores": scores,
            "reached": sum(r is not None for r in reached), "of": len(reached),
            "steps_to_threshold": mean_ci(censored),
            "steps_to_threshold_censored": any(r is None for r in reached)}


def worth(summaries: list[dict], env: str) -> list[dict]:
    """What a doubling of S saves in real env steps to the threshold, per kind (where both
    points reached it in every seed that has finished or reached it)."""
    out = []
    for kind in KINDS:
        pts = sorted((p for p in summaries if p["env"] == env and p["kind"] == kind
                      and p["reached"] == p["of"] > 0),
                     key=lambda p: p["sims"])
        for a, b in zip(pts, pts[1:]):
            if a["sims"] == 0:
                continue
            saved = a["steps_to_threshold"]["mean"] - b["steps_to_threshold"]["mean"]
            extra = (b["sims"] - a["sims"])  # imagined rollouts added per real step
            out.append({"kind": kind, "from_sims": a["sims"], "to_sims": b["sims"], "real_steps_saved": saved,
                        "fraction_saved": saved / a["steps_to_threshold"]["mean"],
                        "real_steps_saved_per_added_simulation": saved / extra})
    return out


def point_seconds(records: list[dict], setting: EnvSetting) -> float | None:
    """A point's training wall-clock from its runs' summaries: the seeds' one program on a pure
    JAX env (each run records the group's time), their sum on a host env (one after another)."""
    walls = [r["wall_time_s"] for r in records if r.get("wall_time_s") is not None]
    if not walls:
        return None
    return float(max(walls) if setting.functional else sum(walls))


def aggregate(root: Path, results_dir: Path, envs: Sequence[str], sims: Sequence[int], kinds: Sequence[str],
              seeds: Sequence[int], steps: int | None, seconds: dict) -> dict:
    summaries = []
    for point in grid(envs, sims, kinds):
        setting = ENVS[point.env]
        budget = steps or setting.budget
        _, dirs = run_dirs(root, point, seeds)
        records = [r for d in dirs if (r := seed_record(d, setting, budget)) is not None]
        if records:
            spent = seconds.get(point) or point_seconds(records, setting)
            summaries.append({**summarize_point(point, records, setting, budget), "seconds": spent})
    record = {
        "benchmark": "dreaming",
        "sims": list(sims), "kinds": list(kinds), "seeds": list(seeds),
        "envs": {e: {**dataclasses.asdict(ENVS[e]), "budget": steps or ENVS[e].budget,
                     "budgets": budgets_of(ENVS[e], steps or ENVS[e].budget)} for e in envs},
        "points": summaries,
        "worth": {e: worth(summaries, e) for e in envs},
        "statistics": "mean over seeds with a Student t 95% interval; env steps to the threshold are read at the "
                      "evaluations (every eval_every env steps), a seed that never reached it counts at the budget "
                      "(the mean is then a lower bound, marked censored)",
    }
    rows = []
    for p in summaries:
        budget_scores = " / ".join(num(v["mean"], 2) for v in p["scores"].values())
        st = p["steps_to_threshold"]
        rows.append([p["env"], p["kind"], p["sims"], budget_scores,
                     f"{num(st['mean'], 0)}{'+' if p['steps_to_threshold_censored'] else ''}", f"{p['reached']}/{p['of']}",
                     num((p["seconds"] or 0) / 60, 1)])
    header = ["env", "planner", "S", "score at budgets (mean over seeds)", "env steps to threshold",
              "seeds reaching it", "training minutes"]
    out = results_dir / "dreaming.json"
    write_result(out, record, (header, rows) if rows else None)
    if summaries:
        try:
            print(f"wrote {draw(record, out.with_suffix('.png'))}")
        except (ImportError, OSError, ValueError) as e:  # the JSON is the result; the figure a convenience
            print(f"{PROG}: no figure: {e}", file=sys.stderr)
    return record


def draw(record: dict, out: Path) -> Path:
    """Per env: score against S at each budget, and env steps to the threshold against S."""
    from matplotlib.figure import Figure

    envs = list(record["envs"])
    fig = Figure(figsize=(11, 3.8 * len(envs)), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(envs), 2))
    styles = {"learned": ("C0", "o"), "learned+reanalyse": ("C1", "s"), "simulator": ("C2", "^")}
    for row, env in zip(axes, envs):
        setting = record["envs"][env]
        pts = [p for p in record["points"] if p["env"] == env]
        for kind, (color, marker) in styles.items():
            mine = sorted((p for p in pts if p["kind"] == kind), key=lambda p: p["sims"])
            if not mine:
                continue
            x = np.array([p["sims"] for p in mine], float)
            for k, b in enumerate(map(str, setting["budgets"])):
                y = np.array([p["scores"].get(b, {}).get("mean") or np.nan for p in mine], float)
                lo = np.array([(p["scores"].get(b, {}).get("ci95") or [np.nan])[0] for p in mine], float)
                hi = np.array([(p["scores"].get(b, {}).get("ci95") or [np.nan, np.nan])[1] for p in mine], float)
                alpha = 0.35 + 0.65 * (k + 1) / len(setting["budgets"])
                row[0].plot(x, y, color=color, marker=marker, alpha=alpha,
                            label=f"{kind}, {int(b):,} steps")
                row[0].fill_between(x, lo, hi, color=color, alpha=0.08)
            y = np.array([p["steps_to_threshold"]["mean"] or np.nan for p in mine], float)
            ci = [p["steps_to_threshold"]["ci95"] or [np.nan, np.nan] for p in mine]
            row[1].errorbar(x, y, yerr=np.abs(np.array(ci, float).T - y), color=color, marker=marker, capsize=3,
                            label=kind)
            cut = np.array([p["steps_to_threshold_censored"] for p in mine])
            if cut.any():  # a seed never reached the threshold: the mean is a lower bound (hollow)
                row[1].plot(x[cut], y[cut], ls="none", marker=marker, markersize=9, markerfacecolor="white",
                            markeredgecolor=color)
        for ax in row:
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_xticks([s for s in record["sims"]])
            ax.set_xticklabels([str(s) for s in record["sims"]])
            ax.set_xlabel("S: search simulations per real step (0: no search)")
            ax.grid(alpha=0.3)
        row[0].set_ylabel("greedy evaluation return")
        row[0].set_title(f"{env}: score at fixed real budgets")
        row[0].legend(fontsize=6, ncol=2)
        row[1].set_yscale("log")
        row[1].set_ylabel(f"env steps to {setting['threshold']:g} (dotted: budget; hollow: lower bound)", fontsize=8)
        row[1].axhline(setting["budget"], color="0.5", ls=":", lw=1)
        row[1].set_title(f"{env}: real steps to {setting['threshold']:g}")
        row[1].legend(fontsize=7)
    fig.suptitle("Dreaming: real experience against imagined rollouts per real step (mean over seeds, 95% t interval)",
                 fontsize=11)
    fig.savefig(out, dpi=110)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog=PROG, description=__doc__.split("\n")[0])
    parser.add_argument("--envs", nargs="+", default=list(ENVS), help=f"default: {' '.join(ENVS)}")
    parser.add_argument("--sims", type=int, nargs="+", default=list(SIMS), help=f"default: {' '.join(map(str, SIMS))}")
    parser.add_argument("--kinds", nargs="+", default=list(KINDS), choices=KINDS)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(DEFAULT_SEEDS))
    parser.add_argument("--steps", type=int, default=None, help="env steps per run (default: each env's budget)")
    parser.add_argument("--max-considered", type=int, default=4, help="Gumbel root actions compared, at most S (default 4)")
    parser.add_argument("--run-root", default=None)
    parser.add_argument("--results-dir", default=None)
    parser.add_argument("--table", action="store_true", help="only aggregate the runs that exist")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    unknown = [e for e in args.envs if e not in ENVS]
    if unknown:
        parser.error(f"unknown env {unknown[0]!r}: choose from {', '.join(ENVS)}")
    if min(args.sims) < 0 or len(set(args.sims)) != len(args.sims):
        parser.error(f"--sims: expected distinct counts >= 0, got {' '.join(map(str, args.sims))}")
    if len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0:
        parser.error(f"--seeds: expected distinct seeds >= 0, got {' '.join(map(str, args.seeds))}")
    if args.steps is not None and args.steps < 1:
        parser.error(f"--steps must be >= 1, got {args.steps}")
    root = Path(args.run_root or DEFAULT_RUN_ROOT)
    results_dir = Path(args.results_dir or RESULTS)
    parser.writable(results_dir / "dreaming.json")
    sims = sorted(args.sims)
    seconds: dict = {}
    if not args.table:
        try:
            for point in grid(args.envs, sims, args.kinds):
                seconds[point] = train_point(point, ENVS[point.env], args.seeds, root, args.steps, args.max_considered)
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted; run the same command to resume", file=sys.stderr)
            return 130
    aggregate(root, results_dir, args.envs, sims, args.kinds, args.seeds, args.steps, seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
