"""Aggregate Atari-100k results: human-normalized scores, mean / median / IQM with
stratified-bootstrap confidence intervals, reference tables and plots.

    python -m benchmarks.atari100k.aggregate [--runs DIR] [--out DIR] [--reps 2000]

Runs are discovered as ``<runs>/<game>/seed_<k>/eval.json`` (written by ``scripts/evaluate.py``);
a ``metrics.jsonl`` beside it, if present, gives learning curves. With no runs the reference
table is printed alone. The statistics (rliable's) and the schema: ``README.md`` beside this file.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure
from rliable import library as rly
from rliable import metrics

from benchmarks.tables import markdown_table, num

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parents[1]
PACKAGED_REFERENCE = PACKAGE_DIR / "reference_scores.csv"
SHARED_REFERENCE = REPO_ROOT.parent / "shared" / "reference" / "atari100k_scores.csv"
DEFAULT_RUNS = PACKAGE_DIR / "results" / "runs"
DEFAULT_OUT = PACKAGE_DIR / "results"
BUDGET_ENV_STEPS = 100_000

# Reference columns of the csv: column -> display name (sources in README.md).
REFERENCE_METHODS: dict[str, str] = {
    "efficientzero": "EfficientZero",
    "bbf": "BBF",
    "dreamerv3": "DreamerV3",
    "spr": "SPR",
    "muzero_100k": "MuZero-100k",
}
# Methods shown per game beside ours.
PER_GAME_METHODS = ("efficientzero", "bbf", "dreamerv3")
# Published aggregate HNS (mean, median) as the papers state them (PROTOCOL.md).
# EfficientZero V2 publishes per-game scores only as a figure in its paper/repository,
# so only its aggregates are listed. DreamerV3's aggregate is given as "about 1.1 / 0.5"
# in PROTOCOL.md, not to 3 decimals, so it is left out here.
PUBLISHED_AGGREGATES: dict[str, dict[str, float]] = {
    "efficientzero_v2": {"mean": 2.428, "median": 1.286},
    "bbf": {"mean": 2.247, "median": 0.917},
    "efficientzero": {"mean": 1.943, "median": 1.090},
    "spr": {"mean": 0.616, "median": 0.396},
    "muzero_100k": {"mean": 0.562, "median": 0.227},
}
DISPLAY = {**REFERENCE_METHODS, "efficientzero_v2": "EfficientZero V2", "ours": "Ours"}


def _squash(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def reference_csv_path(path: str | os.PathLike | None = None) -> Path:
    """The reference csv: ``path`` if given, else ../shared/reference next to the repo,
    else the copy shipped in this package."""
    if path is not None:
        return Path(path)
    return SHARED_REFERENCE if SHARED_REFERENCE.exists() else PACKAGED_REFERENCE


def load_reference(path: str | os.PathLike | None = None) -> dict[str, dict[str, float]]:
    """game -> {"random", "human", <method columns>, "actions"} as floats (actions int)."""
    with open(reference_csv_path(path), newline="") as f:
        return {row["game"]: {k: int(v) if k == "actions" else float(v) for k, v in row.items() if k != "game"}
                for row in csv.DictReader(f)}


def canonical_game(name: str, reference: Mapping[str, Any]) -> str | None:
    """Map any spelling ("ms_pacman", "ALE/MsPacman-v5") to the csv's game name."""
    name = re.sub(r"(NoFrameskip|Deterministic)?(-v\d+)?$", "", str(name).split("/")[-1])
    return {_squash(g): g for g in reference}.get(_squash(name))


def discover_runs(runs_dir: str | os.PathLike, reference: Mapping[str, Any]) -> list[dict]:
    """Read every ``<runs_dir>/<game>/seed_<k>/eval.json``. Unreadable or unknown-game
    files are skipped with a warning. Each run: the json's fields plus "game" (csv
    name), "mean_return", "dir" and "metrics" (path of metrics.jsonl or None)."""
    runs: list[dict] = []
    for path in sorted(Path(runs_dir).glob("*/seed_*/eval.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            warnings.warn(f"skipping {path}: {e}")
            continue
        if not isinstance(record, dict):
            warnings.warn(f"skipping {path}: not a JSON object")
            continue
        game = canonical_game(record.get("game", path.parts[-3]), reference)
        if game is None:
            warnings.warn(f"skipping {path}: unknown game {record.get('game')!r}")
            continue
        mean_return = record.get("mean_return")
        if mean_return is None:  # an eval.json written by hand may give the returns alone
            mean_return = np.mean(record.get("episode_returns") or [np.nan])
        if not np.isfinite(float(mean_return)):
            warnings.warn(f"skipping {path}: no mean_return / episode_returns")
            continue
        seed = record.get("seed")
        if seed is None:
            m = re.match(r"seed_(\d+)$", path.parent.name)
            seed = int(m.group(1)) if m else -1
        metrics = path.parent / "metrics.jsonl"
        runs.append({**record, "game": game, "seed": int(seed),
                     "mean_return": float(mean_return), "dir": str(path.parent),
                     "metrics": str(metrics) if metrics.exists() else None})
    return runs


def read_learning_curve(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """(env_steps, eval/return_mean) from a metrics.jsonl, sorted; other lines are ignored."""
    from agents.plots import Run, read_records, series

    return series(Run(str(path), read_records(str(path)), None), "eval/return_mean", "env_steps")


def human_normalized(score, random: float, human: float):
    """HNS = (score - random) / (human - random)."""
    return (np.asarray(score, dtype=np.float64) - random) / (human - random)


STATS = ("mean", "median", "iqm")


def _columns(scores) -> list[np.ndarray]:
    """A (runs, games) matrix or one sequence of run scores per game -> one (runs, 1)
    array per game, the form rliable's bootstrap takes for games with unequal runs."""
    if isinstance(scores, np.ndarray):
        return [scores[:, [g]].astype(np.float64) for g in range(scores.shape[1])]
    return [np.asarray(s, dtype=np.float64).reshape(-1, 1) for s in scores]


def _aggregates(*columns: np.ndarray) -> np.ndarray:
    """[mean, median, IQM] with rliable's metrics; mean and median go through the per-game
    means (so a game counts once however many runs it has), IQM pools every run."""
    game_means = np.array([[c.mean() for c in columns]])
    return np.array([metrics.aggregate_mean(game_means), metrics.aggregate_median(game_means),
                     metrics.aggregate_iqm(np.concatenate(columns))])


def aggregate_scores(scores) -> dict[str, float]:
    """mean, median, IQM of normalized scores: (runs, games) array or per-game lists."""
    return dict(zip(STATS, map(float, _aggregates(*_columns(scores)))))


def interval_estimates(columns: Sequence[np.ndarray], func: Callable[..., np.ndarray], reps: int = 2000,
                       confidence: float = 0.95, seed: int = 0) -> np.ndarray:
    """rliable's stratified-bootstrap percentile CIs of ``func(*columns)`` (each column
    resampled on its own), shape (2, len(func(...))). rliable 1.2 draws from numpy's global
    generator whatever ``random_state`` it is given, so that generator is seeded here and
    restored afterwards."""
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        _, ci = rly.get_interval_estimates({"x": list(columns)}, func, reps=reps,
                                           confidence_interval_size=confidence)
    finally:
        np.random.set_state(state)
    return ci["x"]


def bootstrap_ci(scores, reps: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> dict[str, tuple[float, float]]:
    """Stratified-bootstrap percentile CIs of mean, median and IQM (rliable)."""
    lo, hi = interval_estimates(_columns(scores), _aggregates, reps, confidence, seed)
    return {k: (float(a), float(b)) for k, a, b in zip(STATS, lo, hi)}


def reference_aggregates(reference, method: str, games: Iterable[str] | None = None) -> dict[str, float]:
    """mean / median / IQM HNS of a reference method's per-game scores."""
    return aggregate_scores([[human_normalized(reference[g][method], reference[g]["random"], reference[g]["human"])]
                             for g in (reference if games is None else games)])


def summarize(runs: Sequence[Mapping], reference: Mapping[str, Mapping[str, float]],
              reps: int = 2000, seed: int = 0) -> dict:
    """Everything the report needs, JSON-serializable."""
    by_game: dict[str, list[Mapping]] = {}
    for run in runs:
        by_game.setdefault(run["game"], []).append(run)
    games_out: dict[str, dict] = {}
    for game, ref in reference.items():
        entry: dict[str, Any] = {"random": ref["random"], "human": ref["human"],
                                 "actions": ref.get("actions")}
        for m in REFERENCE_METHODS:
            if m in ref:
                entry[m] = ref[m]
                entry[f"{m}_hns"] = float(human_normalized(ref[m], ref["random"], ref["human"]))
        game_runs = sorted(by_game.get(game, []), key=lambda r: r["seed"])
        if game_runs:
            returns = np.array([r["mean_return"] for r in game_runs])
            hns = human_normalized(returns, ref["random"], ref["human"])
            entry["ours"] = {
                "n": len(game_runs),
                "seeds": [r["seed"] for r in game_runs],
                "mean_return": float(returns.mean()),
                "std_return": float(returns.std(ddof=1)) if len(returns) > 1 else 0.0,
                "returns": returns.tolist(),
                "hns": float(hns.mean()),
                "hns_per_run": hns.tolist(),
                "env_steps": [r.get("env_steps") for r in game_runs],
                "episodes": [len(r.get("episode_returns") or []) for r in game_runs],
                "commits": sorted({str(r.get("commit", "unknown")) for r in game_runs}),
            }
        games_out[game] = entry

    our_games = [g for g in reference if "ours" in games_out[g]]
    aggregates: dict[str, dict] = {}
    if our_games:
        lists = [np.array(games_out[g]["ours"]["hns_per_run"]) for g in our_games]
        point = aggregate_scores(lists)
        ci = bootstrap_ci(lists, reps=reps, seed=seed)
        aggregates["ours"] = {
            "label": DISPLAY["ours"], "games": our_games, "n_games": len(our_games),
            "n_runs": int(sum(len(s) for s in lists)),
            **{k: {"value": point[k], "ci95": list(ci[k])} for k in point},
        }
    for m in REFERENCE_METHODS:
        if not all(m in reference[g] for g in reference):
            continue
        subsets = [(m, DISPLAY[m], "all", list(reference))]
        if our_games and len(our_games) < len(reference):
            subsets.append((f"{m}@our_games", f"{DISPLAY[m]} (our games)", our_games, our_games))
        for key, label, games, over in subsets:
            aggregates[key] = {"label": label, "games": games, "n_games": len(over), **{
                k: {"value": v, "ci95": [v, v]} for k, v in reference_aggregates(reference, m, over).items()}}
    off_budget = sorted({g for g in our_games
                         for s in games_out[g]["ours"]["env_steps"] if s != BUDGET_ENV_STEPS})
    return {
        "n_runs": len(runs),
        "bootstrap_reps": reps,
        "games": games_out,
        "aggregates": aggregates,
        "published": {m: {**v, "label": DISPLAY[m]} for m, v in PUBLISHED_AGGREGATES.items()},
        "off_budget_games": off_budget,
    }


def format_tables(summary: Mapping) -> str:
    """The per-game and the aggregate tables, as markdown."""
    per_game = []
    for game, e in summary["games"].items():
        o = e.get("ours")
        flag = "*" if o and any(s != BUDGET_ENV_STEPS for s in o["env_steps"]) else ""
        per_game.append([game + flag, num(e["random"]), num(e["human"]),
                         f"{num(o['mean_return'])} ± {num(o['std_return'])}" if o else "—", o["n"] if o else 0,
                         num(o["hns"], 3) if o else "—", *(num(e.get(m)) for m in PER_GAME_METHODS)])

    def cell(stat: Mapping) -> str:
        v, (lo, hi) = stat["value"], stat["ci95"]
        return num(v, 3) if lo == hi else f"{num(v, 3)} [{num(lo, 3)}, {num(hi, 3)}]"

    aggregates = [[a["label"], a["n_games"], *(cell(a[k]) for k in STATS)] for a in summary["aggregates"].values()]
    aggregates += [[f"{p['label']} (published)", 26, num(p["mean"], 3), num(p["median"], 3), "—"]
                   for p in summary["published"].values()]
    lines = ["Per-game scores (ours: mean over seeds ± std; references as published)",
             markdown_table(["game", "random", "human", "ours", "n", "HNS", *(DISPLAY[m] for m in PER_GAME_METHODS)],
                            per_game)]
    if summary.get("off_budget_games"):
        lines.append(f"* some runs did not use the {BUDGET_ENV_STEPS:,}-step budget: "
                     + ", ".join(summary["off_budget_games"]))
    lines += ["", "Aggregate human-normalized scores (95% stratified-bootstrap CI over runs; references: one score per "
              "game, no CI; published: the papers' tables, 26 games)",
              markdown_table(["method", "games", "mean", "median", "IQM"], aggregates)]
    if not summary["aggregates"].get("ours"):
        lines += ["", "No runs found (expected <runs>/<game>/seed_<k>/eval.json)."]
    return "\n".join(lines)


def plot_hns_bars(summary: Mapping, path: str | os.PathLike) -> Path:
    """HNS per game: ours (mean over seeds, seeds as dots) beside EfficientZero."""
    games = list(summary["games"])
    ez = [summary["games"][g].get("efficientzero_hns", np.nan) for g in games]
    ours = [summary["games"][g].get("ours", {}).get("hns", np.nan) for g in games]
    x = np.arange(len(games))
    fig = Figure(figsize=(max(8, 0.5 * len(games) + 2), 4.5), layout="tight")
    ax = fig.subplots()
    ax.bar(x - 0.2, ours, width=0.4, label="Ours", color="tab:blue")
    ax.bar(x + 0.2, ez, width=0.4, label="EfficientZero", color="tab:orange")
    for i, g in enumerate(games):
        o = summary["games"][g].get("ours")
        if o:
            ax.plot([x[i] - 0.2] * len(o["hns_per_run"]), o["hns_per_run"], "k.", ms=3)
    ax.axhline(1.0, color="gray", ls="--", lw=0.8, label="human")
    ax.axhline(0.0, color="black", lw=0.5)
    ax.set_yscale("symlog", linthresh=1.0)
    ax.set_xticks(x, games, rotation=70, ha="right", fontsize=8)
    ax.set_ylabel("human-normalized score")
    ax.set_title("Atari-100k: HNS per game")
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=120)
    return Path(path)


def curve_panel(ax, title: str, curves: Sequence[tuple[np.ndarray, np.ndarray]], references: Sequence[tuple],
                reps: int = 2000) -> None:
    """One game's learning curves on ``ax``, as this module's and ``benchmarks/minatar.py``'s figures
    draw them: each seed's ``(env steps, return)`` thin, the mean over seeds with its 95% bootstrap
    band (seeds resampled jointly over the curve, on ``agents.plots.align``'s grid), and the
    ``references`` ``(label, value, color, linestyle)`` as horizontal lines."""
    from matplotlib.ticker import StrMethodFormatter

    from agents.plots import align

    ax.set_title(title, fontsize=11)
    ax.set_xlabel("env steps", fontsize=9)
    ax.set_ylabel("greedy evaluation return", fontsize=9)
    ax.tick_params(labelsize=8)
    ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
    ax.grid(alpha=0.3)
    for label, value, color, ls in references:
        ax.axhline(value, color=color, ls=ls, lw=1.2, label=label)
    if not curves:
        ax.text(0.5, 0.5, "no result yet", transform=ax.transAxes, ha="center", va="center", color="0.4")
    elif len(curves) == 1:
        ax.plot(*curves[0], color="C0", lw=1.8, marker="o", ms=3, label="ours (1 seed)")
    else:
        grid, values, how = align(list(curves))
        for xs, ys in curves:
            ax.plot(xs, ys, color="C0", lw=0.7, alpha=0.4)
        if how != "none":
            lo, hi = interval_estimates([values[:, None, :]], lambda x: x[:, 0, :].mean(axis=0), reps)
            ax.plot(grid, values.mean(axis=0), color="C0", lw=1.8, marker="o" if len(grid) < 15 else None, ms=3,
                    label=f"ours: mean of {len(curves)} seeds, 95% CI")
            ax.fill_between(grid, lo, hi, color="C0", alpha=0.2, lw=0)
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    ax.legend(fontsize=7, loc="upper left")


def plot_learning_curves(runs: Sequence[Mapping], reference: Mapping, path: str | os.PathLike,
                         reps: int = 2000) -> Path | None:
    """One :func:`curve_panel` per game with an ``eval/return_mean`` curve in a run's
    metrics.jsonl, random and EfficientZero as references; None if no run has a curve."""
    curves: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for run in sorted(runs, key=lambda r: r["seed"]):
        steps, values = read_learning_curve(run["metrics"]) if run.get("metrics") else ((), ())
        if len(steps):
            curves.setdefault(run["game"], []).append((steps, values))
    games = [g for g in reference if g in curves]
    if not games:
        return None
    cols = min(4, len(games))
    rows = math.ceil(len(games) / cols)
    fig = Figure(figsize=(4.5 * cols, 3.6 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax, game in zip(axes, games):
        ref = reference[game]
        lines = [(f"random = {ref['random']:g}", ref["random"], "0.35", "-")]
        if "efficientzero" in ref:
            lines.append((f"EfficientZero = {ref['efficientzero']:g}", ref["efficientzero"], "C1", "--"))
        curve_panel(ax, game, curves[game], lines, reps)
    for ax in axes[len(games):]:
        ax.axis("off")
    fig.savefig(path, dpi=110)
    return Path(path)


def run(runs_dir=DEFAULT_RUNS, out_dir=DEFAULT_OUT, reference_path=None, reps: int = 2000,
        seed: int = 0, plots: bool = True, quiet: bool = False) -> dict:
    reference = load_reference(reference_path)
    runs = discover_runs(runs_dir, reference)
    summary = summarize(runs, reference, reps=reps, seed=seed)
    summary["reference_csv"] = str(reference_csv_path(reference_path))
    summary["runs_dir"] = str(runs_dir)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {}
    if plots:
        files["hns_bars"] = str(plot_hns_bars(summary, out_dir / "hns_per_game.png"))
        curves = plot_learning_curves(runs, reference, out_dir / "learning_curves.png", reps)
        if curves is not None:
            files["learning_curves"] = str(curves)
    summary["files"] = files
    (out_dir / "aggregate.json").write_text(json.dumps(summary, indent=1, allow_nan=False) + "\n")
    if not quiet:
        print(format_tables(summary))
        print(f"\nwrote {out_dir / 'aggregate.json'}" + "".join(f", {p}" for p in files.values()))
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default=str(DEFAULT_RUNS),
                        help="directory holding <game>/seed_<k>/eval.json (default: %(default)s)")
    parser.add_argument("--out", default=str(DEFAULT_OUT),
                        help="where aggregate.json and the plots go (default: %(default)s)")
    parser.add_argument("--reference", default=None,
                        help="reference csv (default: ../shared/reference/atari100k_scores.csv, "
                             "else the packaged reference_scores.csv)")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap replicates")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap random seed")
    parser.add_argument("--no-plots", action="store_true")
    args = parser.parse_args(argv)
    run(args.runs, args.out, args.reference, reps=args.reps, seed=args.seed,
        plots=not args.no_plots)
    return 0


if __name__ == "__main__":
    sys.exit(main())
