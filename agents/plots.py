#!/usr/bin/env python3
"""Draw learning curves of runs to a PNG, seeds of one config pooled into a mean with a CI.

    python scripts/plot.py runs/cartpole-*/ --threshold 195 --out curves.png
    python scripts/plot.py runs/a-* runs/b-* --x time --metrics eval/return_mean train/episode_return
    python scripts/plot.py runs/breakout-* --reference "EfficientZero=414.1" --reference "human=30.5"

Runs are grouped by config: run directories whose ``config.json`` differ only in ``seed``
form one group, drawn as one curve. A group of 5 or more runs is drawn as its
interquartile mean (IQM) with a 95% stratified-bootstrap confidence interval (rliable); a
group of 2 to 4 runs as its mean with a 95% percentile-bootstrap interval over runs (too
few runs for an IQM to trim anything useful); a single run as its own curve, with a
± std band over the evaluation episodes where the metric is ``<name>_mean`` and
``<name>_std`` is logged beside it (``eval/return_mean`` and ``eval/return_std``). The
legend names each group by preset and env id, plus the config fields in which the groups
differ, and the number of seeds.

Alignment of the runs in a group, per metric: where every run logged the metric at the
same x values (evaluations happen at the same env steps for runs of one config), those
values are used as they are. Where the runs share most of their x values but some run has
more (a longer or resumed run), only the shared values are drawn: the common prefix, so
that every point of the curve averages all runs. Otherwise (x is wall-clock time, or the
metric is logged on a clock, as the losses are) each run is linearly interpolated onto a
common grid over the x range that all runs cover; the figure's footnote says so.

By default the panels are the evaluation return and the four loss terms in separate
panels (value, policy, reward, consistency) rather than ``loss/total``: the consistency
term is a negative cosine similarity summed over the unroll (best value ``-K`` for ``K``
unroll steps), so the total loss can be, and usually is, negative.

Bad input (a directory without metrics.jsonl, a metric no run logs, a malformed
``--reference``, an output path that cannot be written) ends with one line on stderr and
exit code 2, before anything is drawn.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import textwrap
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

PROG = "plot.py"
X_AXES = {"env_steps": "env steps", "time": "wall-clock time (s)", "updates": "updates (gradient steps)"}
LOSS_TERMS = ("loss/value", "loss/policy", "loss/reward", "loss/consistency")
DEFAULT_METRICS = ("eval/return_mean", *LOSS_TERMS)
IQM_MIN_RUNS = 5  # rliable's IQM trims a quarter of the runs at each end: below 5 runs it trims nothing useful
CI_SIZE = 0.95
MAX_GRID = 300  # points of an interpolated curve

# metric -> (panel title, y-axis label)
METRIC_LABELS = {
    "eval/return_mean": ("Evaluation return", "return per episode"),
    "eval/return_std": ("Spread of evaluation returns", "std of return per episode"),
    "eval/episodes": ("Evaluation episodes", "episodes per evaluation"),
    "train/episode_return": ("Training episode return", "return per episode (exploring)"),
    "loss/total": ("Total loss (weighted sum; can be < 0)", "loss"),
    "loss/value": ("Value loss", "cross-entropy, Σ over unroll (nats)"),
    "loss/policy": ("Policy loss", "cross-entropy, Σ over unroll (nats)"),
    "loss/reward": ("Reward / value-prefix loss", "cross-entropy, Σ over unroll (nats)"),
    "loss/consistency": ("Consistency loss", "−cosine similarity, Σ over unroll"),
    "speed/env_steps_per_s": ("Env-step rate", "env steps / s"),
    "speed/updates_per_s": ("Update rate", "updates / s"),
    "train/learning_rate": ("Learning rate", "learning rate"),
    "train/grad_norm": ("Gradient norm", "global L2 norm"),
    "train/value_prediction": ("Predicted root value", "value"),
    "train/value_target": ("Value target", "value"),
}


class PlotInputError(ValueError):
    """Bad user input; the command line prints it as one line and exits with code 2."""


@dataclass
class Run:
    path: str
    records: list[dict]
    config: dict | None  # parsed config.json, None where the run has none

    @property
    def name(self) -> str:
        return os.path.basename(os.path.normpath(self.path))

    @property
    def seed(self) -> Any:
        return None if self.config is None else self.config.get("seed")


@dataclass
class Group:
    """Runs whose configs are equal apart from ``seed``."""

    runs: list[Run]
    config: dict  # flattened config without the seed ({} for a run without config.json)
    label: str = ""

    @property
    def statistic(self) -> str:
        n = len(self.runs)
        if n >= IQM_MIN_RUNS:
            return f"n={n} seeds, IQM ± 95% stratified-bootstrap CI"
        if n > 1:
            return f"n={n} seeds, mean ± 95% bootstrap CI"
        seed = self.runs[0].seed
        return "n=1 seed" + (f" (seed {seed})" if seed is not None else "")


@dataclass
class PlotResult:
    """What :func:`plot_runs` drew: the PNG path, the matplotlib Figure, its panels and groups."""

    path: str
    figure: Any
    axes: dict[str, Any]  # metric -> Axes
    groups: list[Group]
    legend: Any  # the one legend, below the panels
    notes: list[str] = field(default_factory=list)  # the footnotes under the legend


# ---------------------------------------------------------------------------------------
# Reading runs


def read_records(path: str) -> list[dict]:
    """The JSON records of a ``metrics.jsonl``; a torn last line is skipped.

    Kept here rather than imported from ``dreamer.logger`` (which reads the same way):
    importing the ``dreamer`` package imports JAX, and this script should start fast and
    work on a machine that has only the run directories.
    """
    records = []
    with open(path) as f:
        for line in f:
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                records.append(record)
    return records


def load_run(path: str) -> Run:
    metrics_path = os.path.join(path, "metrics.jsonl")
    if not os.path.isfile(metrics_path):
        raise PlotInputError(f"no metrics.jsonl in {path}")
    records = read_records(metrics_path)
    if not records:
        raise PlotInputError(f"{metrics_path} holds no metric records")
    config = None
    config_path = os.path.join(path, "config.json")
    if os.path.isfile(config_path):
        try:
            with open(config_path) as f:
                config = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise PlotInputError(f"cannot read {config_path}: {e}") from None
        if not isinstance(config, dict):
            raise PlotInputError(f"{config_path} is not a JSON object")
    return Run(path=path, records=records, config=config)


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """``{"learner": {"learning_rate": 0.01}}`` -> ``{"learner.learning_rate": 0.01}``."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = json.dumps(value) if isinstance(value, list) else value
    return flat


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return "—" if value is None else str(value)


def group_runs(runs: Sequence[Run]) -> list[Group]:
    """Groups runs whose configs differ only in ``seed`` and names each group for the legend."""
    groups: list[Group] = []
    for run in runs:
        if run.config is None:
            groups.append(Group([run], {}))
            continue
        flat = {k: v for k, v in flatten(run.config).items() if k != "seed"}
        for group in groups:
            if group.config and group.config == flat:
                group.runs.append(run)
                break
        else:
            groups.append(Group([run], flat))

    def kind(group: Group) -> tuple[str, str]:
        return str(group.config.get("preset", "?")), str(group.config.get("env.id", "?"))

    for group in groups:
        if not group.config:
            group.label = f"{group.runs[0].name} (no config.json) · {group.statistic}"
            continue
        # Name the fields that set this group apart from the groups of its preset and env.
        siblings = [g for g in groups if g.config and kind(g) == kind(group)]
        keys = sorted({k for g in siblings for k in g.config} - {"preset", "env.id"})
        differ = [k for k in keys if len({repr(g.config.get(k)) for g in siblings}) > 1]
        parts = list(kind(group))
        shown = differ[:4]
        parts += [f"{k}={_format_value(group.config.get(k))}" for k in shown]
        if len(differ) > len(shown):
            parts.append(f"(+{len(differ) - len(shown)} more fields differ)")
        group.label = " · ".join(parts) + f" · {group.statistic}"
    labels = [g.label for g in groups]
    for group in groups:
        if labels.count(group.label) > 1:  # differences beyond the fields shown: tell them apart by a run
            group.label += f" · e.g. {group.runs[0].name}"
    return groups


# ---------------------------------------------------------------------------------------
# Series, alignment and aggregation


def series(run: Run, metric: str, x: str) -> tuple[np.ndarray, np.ndarray]:
    """``(xs, ys)`` of one run's metric, sorted by x; a repeated x (a resume) keeps the last record."""
    points: dict[float, float] = {}
    for record in run.records:
        if metric in record and x in record:
            try:
                points[float(record[x])] = float(record[metric])
            except (TypeError, ValueError):
                continue
    xs = np.array(sorted(points), dtype=float)
    return xs, np.array([points[v] for v in xs], dtype=float)


def align(curves: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, str]:
    """Puts the runs' curves on one x grid: ``(grid, values [runs, len(grid)], how)``.

    ``how`` is ``"shared"`` (all runs logged the same x values), ``"prefix"`` (the x values
    all runs logged, at least 90% of the shortest run's: a longer run's tail is dropped),
    ``"interpolated"`` (linear interpolation over the x range all runs cover) or ``"none"``
    (the runs' x ranges do not overlap; nothing to pool).
    """
    first = curves[0][0]
    if all(len(xs) == len(first) and np.array_equal(xs, first) for xs, _ in curves):
        return first, np.stack([ys for _, ys in curves]), "shared"
    common = first
    for xs, _ in curves[1:]:
        common = np.intersect1d(common, xs)
    shortest = min(len(xs) for xs, _ in curves)
    if len(common) and len(common) >= 0.9 * shortest:
        rows = [ys[np.searchsorted(xs, common)] for xs, ys in curves]
        return common, np.stack(rows), "prefix"
    lo = max(xs[0] for xs, _ in curves)
    hi = min(xs[-1] for xs, _ in curves)
    if not lo < hi:
        return np.array([]), np.zeros((len(curves), 0)), "none"
    grid = np.unique(np.concatenate([xs[(xs >= lo) & (xs <= hi)] for xs, _ in curves]))
    if len(grid) > MAX_GRID:
        grid = np.linspace(lo, hi, MAX_GRID)
    return grid, np.stack([np.interp(grid, xs, ys) for xs, ys in curves]), "interpolated"


def _iqm_per_point(scores: np.ndarray) -> np.ndarray:
    """IQM over runs at each x: rliable's ``aggregate_iqm`` statistic (25% trimmed mean),
    taken over the run axis only so that one call covers the whole curve."""
    from scipy.stats import trim_mean

    return trim_mean(scores.reshape(-1, scores.shape[-1]), proportiontocut=0.25, axis=0)


def _mean_per_point(scores: np.ndarray) -> np.ndarray:
    return scores.reshape(-1, scores.shape[-1]).mean(axis=0)


def aggregate(values: np.ndarray, reps: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point estimate and 95% CI at each x of ``values [runs, T]``: IQM with rliable's
    stratified bootstrap for 5 or more runs, else the mean with a percentile bootstrap over
    runs (the same rliable bootstrap, one task)."""
    from rliable import library as rly

    func = _iqm_per_point if len(values) >= IQM_MIN_RUNS else _mean_per_point
    scores = values[:, None, :]  # rliable's layout: runs x tasks x points
    # rliable draws its resampling indices from NumPy's global generator (its random_state
    # argument does not reach them): seed it for a reproducible figure, then restore it.
    state = np.random.get_state()
    np.random.seed(seed)
    try:
        point, interval = rly.get_interval_estimates(
            {"g": scores}, func, method="percentile", reps=reps, confidence_interval_size=CI_SIZE
        )
    finally:
        np.random.set_state(state)
    return point["g"], interval["g"][0], interval["g"][1]


# ---------------------------------------------------------------------------------------
# Drawing


def metric_labels(metric: str) -> tuple[str, str]:
    if metric in METRIC_LABELS:
        return METRIC_LABELS[metric]
    section, _, name = metric.rpartition("/")
    readable = name.replace("_per_s", " / s").replace("_", " ")
    return (f"{readable} ({section})" if section else readable), readable


def is_return(metric: str) -> bool:
    return "return" in metric and not metric.endswith("_std")


def resolve_metrics(runs: Sequence[Run], metrics: Sequence[str] | None, x: str) -> list[str]:
    logged = {k for run in runs for r in run.records if x in r for k in r}
    if metrics:
        missing = [m for m in metrics if m not in logged]
        if missing:
            available = sorted(k for k in logged if k not in ("env_steps", "updates", "time"))
            shown = ", ".join(available[:12]) + (", ..." if len(available) > 12 else "")
            raise PlotInputError(f"no run logs {', '.join(missing)} against {x} (logged: {shown})")
        return list(dict.fromkeys(metrics))
    chosen = [m for m in DEFAULT_METRICS if m in logged]
    if not any(m in logged for m in LOSS_TERMS) and "loss/total" in logged:
        chosen.append("loss/total")
    if not chosen:
        raise PlotInputError(f"no run logs any of {', '.join(DEFAULT_METRICS)}; choose panels with --metrics")
    return chosen


def _check_out(out: str) -> None:
    from matplotlib.backend_bases import FigureCanvasBase

    ext = os.path.splitext(out)[1].lstrip(".").lower()
    formats = FigureCanvasBase.get_supported_filetypes()
    if ext not in formats:
        raise PlotInputError(f"--out {out}: unknown image format {ext!r} (use one of {', '.join(sorted(formats))})")
    folder = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise PlotInputError(f"--out {out}: cannot create {folder}: {e.strerror}") from None
    if not os.access(folder, os.W_OK) or os.path.isdir(out):
        raise PlotInputError(f"--out {out}: not writable")


def _featured(metrics: Sequence[str]) -> bool:
    return is_return(metrics[0]) and len(metrics) in (3, 5)


def _layout(fig, metrics: list[str]) -> list[Any]:
    """A large first panel beside a 2x2 (or 2x1) block when the first metric is a return
    and two or four panels follow (the default); otherwise a grid of equal panels."""
    n = len(metrics)
    if _featured(metrics):
        rest = n - 1
        cols = 2 if rest > 2 else 1
        gs = fig.add_gridspec(2, 2 + cols, width_ratios=[1.3, 1.3] + [1] * cols)
        axes = [fig.add_subplot(gs[:, :2])]
        for i in range(rest):
            axes.append(fig.add_subplot(gs[i // cols, 2 + i % cols]))
        return axes
    cols = _grid_cols(n)
    rows = math.ceil(n / cols)
    return [fig.add_subplot(rows, cols, i + 1) for i in range(n)]


def _grid_cols(n: int) -> int:
    return 2 if n == 4 else min(n, 3)


def _unroll_steps(groups: list[Group]) -> int | None:
    ks = {g.config.get("learner.unroll_steps") for g in groups if g.config}
    return ks.pop() if len(ks) == 1 and None not in ks else None


def plot_runs(
    run_dirs: Sequence[str],
    out: str,
    metrics: Sequence[str] | None = None,
    x: str = "env_steps",
    threshold: float | None = None,
    references: Sequence[tuple[str, float]] = (),
    reps: int = 2000,
    seed: int = 0,
    dpi: int = 130,
) -> PlotResult:
    """Draws the runs' learning curves to ``out`` and returns what was drawn.

    ``metrics`` None draws the defaults (evaluation return and the four loss terms).
    ``threshold`` and ``references`` (``(name, value)`` pairs) are horizontal lines on the
    return panels (on the first panel where no metric is a return). ``reps`` bootstrap
    resamples per curve; ``seed`` makes the CI bands reproducible. Raises
    :class:`PlotInputError` on bad input before anything is drawn.
    """
    if x not in X_AXES:
        raise PlotInputError(f"--x must be one of {', '.join(X_AXES)}, got {x!r}")
    if not run_dirs:
        raise PlotInputError("no run directories given")
    unique = {os.path.realpath(path): path for path in reversed(run_dirs)}  # a directory named twice counts once
    runs = [load_run(path) for path in reversed(unique.values())]
    metrics = resolve_metrics(runs, metrics, x)
    _check_out(out)
    groups = group_runs(runs)

    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.ticker import StrMethodFormatter

    n = len(metrics)
    featured = _featured(metrics)
    width, height = (13.5, 6.2) if featured else (max(4.6 * _grid_cols(n), 9.0), 3.4 * math.ceil(n / _grid_cols(n)))
    fig = Figure(figsize=(width, height + 1.0), layout="constrained")
    # Panels above, legend and notes below in a footer sized once they are known.
    body, foot = fig.subfigures(2, 1, height_ratios=[height, 1.0])
    axes = dict(zip(metrics, _layout(body, metrics)))
    colors = [f"C{i % 10}" for i in range(len(groups))]
    notes: list[str] = []
    how_by_metric: dict[str, set[str]] = {m: set() for m in metrics}
    band_handles: dict[str, tuple] = {}
    std_labels: set[str] = set()
    seed_lines = False

    for metric, ax in axes.items():
        std_metric = metric[: -len("_mean")] + "_std" if metric.endswith("_mean") else None
        for group, color in zip(groups, colors):
            curves = [series(run, metric, x) for run in group.runs]
            curves = [c for c in curves if len(c[0])]
            if not curves:
                continue
            if len(curves) == 1:
                xs, ys = curves[0]
                ax.plot(xs, ys, color=color, lw=1.6, marker="o" if len(xs) < 15 else None, ms=3, label=group.label)
                if std_metric is not None and len(group.runs) == 1:
                    sx, sy = series(group.runs[0], std_metric, x)
                    if len(sx) and np.array_equal(sx, xs):
                        episodes = {r.get("eval/episodes") for r in group.runs[0].records if "eval/episodes" in r}
                        per = f"the {int(episodes.pop())} " if len(episodes) == 1 else "the "
                        std_label = f"n=1 seed: band is ± std over {per}evaluation episodes"
                        ax.fill_between(xs, ys - sy, ys + sy, color=color, alpha=0.2, lw=0, label=std_label)
                        std_labels.add(std_label)
                continue
            grid, values, how = align(curves)
            how_by_metric[metric].add(how)
            if how == "none":
                for xs, ys in curves:
                    ax.plot(xs, ys, color=color, lw=0.8, alpha=0.6)
                continue
            center, lo, hi = aggregate(values, reps=reps, seed=seed)
            if is_return(metric) and len(values) < IQM_MIN_RUNS:  # few seeds: show each one too
                for row in values:
                    ax.plot(grid, row, color=color, lw=0.7, alpha=0.45)
                seed_lines = True
            marker = "o" if len(grid) < 15 and how != "interpolated" else None  # markers only on measured points
            (line,) = ax.plot(grid, center, color=color, lw=1.8, marker=marker, ms=3,
                              label=group.label)
            band = ax.fill_between(grid, lo, hi, color=color, alpha=0.2, lw=0)
            band_handles.setdefault(group.label, (band, line))  # the legend shows line and band

        title, ylabel = metric_labels(metric)
        if metric == "eval/return_mean":
            episodes = {r["eval/episodes"] for run in runs for r in run.records if "eval/episodes" in r}
            if len(episodes) == 1:
                title += f" (mean of {int(episodes.pop())} episodes per evaluation)"
        ax.set_title(title, fontsize=11 if ax is axes[metrics[0]] and featured else 9.5)
        ax.set_ylabel(ylabel, fontsize=9)
        ax.set_xlabel(X_AXES[x], fontsize=9)
        ax.tick_params(labelsize=8)
        if x != "time":
            ax.xaxis.set_major_formatter(StrMethodFormatter("{x:,.0f}"))
        ax.grid(alpha=0.3)

    line_axes = [ax for m, ax in axes.items() if is_return(m)] or [axes[metrics[0]]]
    ref_styles = ["--", "-.", ":", (0, (5, 2, 1, 2))]
    for ax in line_axes:
        if threshold is not None:
            ax.axhline(threshold, color="0.25", ls=":", lw=1.3, label=f"threshold {threshold:g}")
        for i, (name, value) in enumerate(references):
            ax.axhline(value, color="0.45", ls=ref_styles[i % len(ref_styles)], lw=1.1, label=f"{name} = {value:g}")

    if "loss/consistency" in axes:
        k = _unroll_steps(groups)
        ax = axes["loss/consistency"]
        best = f"−{k}" if k else "−K"
        if k:
            ax.axhline(-k, color="0.4", ls=":", lw=1)
        ax.text(0.98, 0.96, f"−cosine: best is {best}" + (" (dotted)" if k else ""),
                transform=ax.transAxes, ha="right", va="top", fontsize=7, color="0.3")
        notes.append(f"Consistency loss = −cosine similarity of predicted and real next latents, summed over "
                     f"{k or 'K'} unroll steps: it runs from {best} (perfect) to +{k or 'K'}, so loss/total can be negative.")
    if any("interpolated" in h for h in how_by_metric.values()):
        which = [m for m, h in how_by_metric.items() if "interpolated" in h]
        names = "the loss terms" if set(which) == set(LOSS_TERMS) & set(metrics) else ", ".join(which)
        notes.append(f"The seeds logged {names} at different {X_AXES[x]}: each seed is interpolated linearly onto a "
                     "common grid over the range all seeds cover.")
    if any("prefix" in h for h in how_by_metric.values()):
        notes.append("Some seeds ran longer than others: curves stop where the shortest seed stops.")
    if any("none" in h for h in how_by_metric.values()):
        notes.append("Some seeds share no x range: their curves are drawn one by one, unpooled.")

    # One legend for all panels: the groups, then bands and horizontal lines.
    entries: dict[str, Any] = {}
    for ax in [*axes.values()]:
        for handle, label in zip(*ax.get_legend_handles_labels()):
            entries.setdefault(label, handle)
    entries.update(band_handles)
    for label in std_labels:  # one entry for the std bands of all single runs, in neutral grey
        entries[label] = Patch(facecolor="0.5", alpha=0.3, lw=0)
    if seed_lines:
        entries["thin lines: individual seeds"] = Line2D([], [], color="0.5", lw=0.7)
    ranked = sorted(entries, key=lambda label: (0 if any(label == g.label for g in groups) else 1))
    ncols = 1 if len(ranked) < 2 or width < 12 else 2
    legend_rows = math.ceil(len(ranked) / ncols)
    note_text = "\n".join(textwrap.fill(note, width=int(width * 17)) for note in notes)
    note_rows = note_text.count("\n") + 1 if notes else 0
    foot_height = 0.2 + 0.19 * legend_rows + 0.17 * note_rows
    fig.set_size_inches(width, height + foot_height)
    body._subplotspec.get_gridspec().set_height_ratios([height, foot_height])
    legend = None
    if ranked:
        legend = foot.legend([entries[label] for label in ranked], ranked, loc="upper center", ncols=ncols, fontsize=8.5,
                    frameon=False, borderaxespad=0.1)
    if notes:
        foot.text(0.01, 0.02, note_text, ha="left", va="bottom", fontsize=8, color="0.3")
    fig.savefig(out, dpi=dpi)
    return PlotResult(path=out, figure=fig, axes=axes, groups=groups, legend=legend, notes=notes)


# ---------------------------------------------------------------------------------------
# Command line


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line (no usage block in front)."""

    def error(self, message: str):
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def parse_reference(text: str) -> tuple[str, float]:
    name, sep, value = text.rpartition("=")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not sep or not name.strip() or not math.isfinite(number):
        raise PlotInputError(f"--reference expects NAME=VALUE with a finite number, got {text!r}")
    return name.strip(), number


def main(argv: Sequence[str] | None = None) -> int:
    parser = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="run directories (each with metrics.jsonl and config.json)")
    parser.add_argument("--out", default="curves.png", help="image path; the format follows the extension (default: %(default)s)")
    parser.add_argument("--x", default="env_steps", choices=list(X_AXES), help="x axis (default: %(default)s)")
    parser.add_argument("--metrics", nargs="+", metavar="NAME",
                        help=f"panels, metric names from metrics.jsonl (default: {' '.join(DEFAULT_METRICS)})")
    parser.add_argument("--threshold", type=float, metavar="VALUE", help="horizontal line on the return panels, e.g. 195 for CartPole-v0")
    parser.add_argument("--reference", action="append", default=[], metavar="NAME=VALUE",
                        help="a labelled horizontal reference line on the return panels, e.g. a published score; repeatable")
    parser.add_argument("--reps", type=int, default=2000, help="bootstrap resamples per curve (default: %(default)s)")
    args = parser.parse_args(argv)
    try:
        if args.reps < 100:
            raise PlotInputError(f"--reps must be at least 100, got {args.reps}")
        if args.threshold is not None and not math.isfinite(args.threshold):
            raise PlotInputError(f"--threshold must be a finite number, got {args.threshold}")
        references = [parse_reference(text) for text in args.reference]
        result = plot_runs(args.runs, args.out, args.metrics, args.x, args.threshold, references, reps=args.reps)
    except PlotInputError as e:
        print(f"{PROG}: error: {e}", file=sys.stderr)
        return 2
    print(result.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
