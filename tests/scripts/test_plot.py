"""scripts/plot.py (agents/plots.py) on synthetic run directories (no training): labels, grouping, bands, lines, refusals."""

import json
import os

import numpy as np
import pytest
from helpers import run_script
from matplotlib.collections import PolyCollection
from scipy.stats import trim_mean

import agents.plots as plot  # noqa: E402

EVAL_STEPS = [500, 1000, 1500, 2000, 2500, 3000]


def make_run(root, name, seed, *, lr=0.003, eval_steps=EVAL_STEPS, loss_offset=0, with_config=True,
             preset="cartpole", batch_size=256):
    """A run directory like scripts/train.py leaves: config.json and metrics.jsonl.

    Returns are seed-dependent so that seeds differ; losses are logged on a clock, at env
    steps shifted by ``loss_offset``; the consistency term is negative, as it is in training.
    """
    run = root / name
    run.mkdir()
    if with_config:
        config = {"preset": preset, "seed": seed, "env": {"id": "CartPole-v0", "eval_episodes": 10},
                  "learner": {"learning_rate": lr, "unroll_steps": 5}, "loop": {"env_steps": 3000},
                  "replay": {"batch_size": batch_size if preset == "cartpole" else 16}}
        (run / "config.json").write_text(json.dumps(config))
    records = []
    for i, step in enumerate(eval_steps):
        records.append({"env_steps": step, "updates": step // 2, "time": step / 50.0 + seed,
                        "eval/return_mean": 20.0 + 30.0 * i + 7.0 * seed, "eval/return_std": 4.0 + i,
                        "eval/episodes": 10.0})
    for step in range(100 + loss_offset, eval_steps[-1], 230):
        records.append({"env_steps": step, "updates": step // 2, "time": step / 50.0 + seed,
                        "loss/total": -2.0 + 1000.0 / step, "loss/value": 3.0, "loss/policy": 0.6,
                        "loss/reward": 1.0, "loss/consistency": -4.5 + seed * 0.1,
                        "speed/env_steps_per_s": 40.0})
    records.sort(key=lambda r: r["env_steps"])
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(run)


def legend_texts(result):
    return [t.get_text() for t in result.legend.get_texts()]


def bands(ax):
    return [c for c in ax.collections if isinstance(c, PolyCollection)]


def band_y_range(collection):
    ys = np.concatenate([p.vertices[:, 1] for p in collection.get_paths()])
    return ys.min(), ys.max()


def test_three_seeds_of_one_config(tmp_path):
    runs = [make_run(tmp_path, f"s{s}", s, loss_offset=37 * s) for s in range(3)]
    out = str(tmp_path / "curves.png")
    result = plot.plot_runs(runs, out, threshold=195.0, reps=300)
    assert result.path == out and open(out, "rb").read(4) == b"\x89PNG"

    # Default panels: the eval return and the four loss terms, not a lone loss/total.
    assert list(result.axes) == ["eval/return_mean", "loss/value", "loss/policy", "loss/reward", "loss/consistency"]
    for metric, ax in result.axes.items():
        assert ax.get_xlabel() == "env steps", metric
        assert ax.get_ylabel(), metric
        assert ax.get_title(), metric
    assert result.axes["eval/return_mean"].get_ylabel() == "return per episode"

    # One group; its curve is the mean over seeds at the shared eval steps, inside a CI band.
    assert len(result.groups) == 1 and len(result.groups[0].runs) == 3
    ax = result.axes["eval/return_mean"]
    label = result.groups[0].label
    (mean_line,) = [line for line in ax.get_lines() if line.get_label() == label]
    np.testing.assert_array_equal(mean_line.get_xdata(), EVAL_STEPS)
    expected = [20.0 + 30.0 * i + 7.0 for i in range(len(EVAL_STEPS))]  # seeds 0, 1, 2 -> + 7 * mean(seed)
    np.testing.assert_allclose(mean_line.get_ydata(), expected)
    (band,) = bands(ax)
    low, high = band_y_range(band)
    assert 20.0 <= low < min(expected) and max(expected) < high <= 20.0 + 30.0 * 5 + 14.0  # within the seeds' range

    # The threshold line and a legend entry that names the config and the seed count.
    assert any(list(line.get_ydata()) == [195.0, 195.0] and line.get_label() == "threshold 195" for line in ax.get_lines())
    texts = legend_texts(result)
    assert "cartpole · CartPole-v0 · n=3 seeds, mean ± 95% bootstrap CI" in texts
    assert "threshold 195" in texts
    assert not any("s0" in t or "s1" in t for t in texts)  # configs, not directory names

    # Losses were logged at different env steps per seed: interpolated, and the figure says so;
    # the consistency term's sign is explained.
    assert any("interpolated" in note and "the loss terms" in note for note in result.notes)
    assert any("Consistency" in note and "negative" in note for note in result.notes)
    consistency = result.axes["loss/consistency"]
    assert any(list(line.get_ydata()) == [-5, -5] for line in consistency.get_lines())


def test_five_seeds_draw_the_iqm(tmp_path):
    runs = [make_run(tmp_path, f"s{s}", s) for s in range(5)]
    result = plot.plot_runs(runs, str(tmp_path / "c.png"), metrics=["eval/return_mean"], reps=300)
    label = result.groups[0].label
    assert label.endswith("n=5 seeds, IQM ± 95% stratified-bootstrap CI")
    ax = result.axes["eval/return_mean"]
    (line,) = [l for l in ax.get_lines() if l.get_label() == label]
    values = np.array([[20.0 + 30.0 * i + 7.0 * s for i in range(len(EVAL_STEPS))] for s in range(5)])
    np.testing.assert_allclose(line.get_ydata(), trim_mean(values, 0.25, axis=0))
    assert len(bands(ax)) == 1


def test_single_run_shows_the_std_band(tmp_path):
    run = make_run(tmp_path, "only", 0)
    result = plot.plot_runs([run], str(tmp_path / "c.png"), reps=300)
    ax = result.axes["eval/return_mean"]
    (band,) = bands(ax)
    low, high = band_y_range(band)
    assert low == pytest.approx(20.0 - 4.0) and high == pytest.approx(20.0 + 150.0 + 9.0)
    texts = legend_texts(result)
    assert "cartpole · CartPole-v0 · n=1 seed (seed 0)" in texts
    assert "n=1 seed: band is ± std over the 10 evaluation episodes" in texts
    assert not any("only" in t for t in texts)  # configs, not directory names
    # Loss panels of a single run draw the run's curve, no band.
    assert bands(result.axes["loss/value"]) == []


def test_groups_are_named_by_the_fields_they_differ_in(tmp_path):
    runs = [make_run(tmp_path, f"a{s}", s, lr=0.003) for s in range(2)]
    runs += [make_run(tmp_path, f"b{s}", s, lr=0.01) for s in range(2)]
    runs.append(make_run(tmp_path, "c0", 0, lr=0.03))
    result = plot.plot_runs(runs, str(tmp_path / "c.png"), metrics=["eval/return_mean", "loss/total"], reps=300)
    assert [len(g.runs) for g in result.groups] == [2, 2, 1]
    texts = legend_texts(result)
    assert "cartpole · CartPole-v0 · learner.learning_rate=0.003 · n=2 seeds, mean ± 95% bootstrap CI" in texts
    assert "cartpole · CartPole-v0 · learner.learning_rate=0.01 · n=2 seeds, mean ± 95% bootstrap CI" in texts
    assert "cartpole · CartPole-v0 · learner.learning_rate=0.03 · n=1 seed (seed 0)" in texts
    assert len(bands(result.axes["eval/return_mean"])) == 3  # two CI bands, one std band
    assert result.axes["loss/total"].get_ylabel()


def test_presets_are_told_apart_by_name_and_a_run_named_twice_counts_once(tmp_path):
    cartpole = [make_run(tmp_path, f"c{s}", s) for s in range(2)]
    debug = make_run(tmp_path, "d0", 0, preset="debug")
    result = plot.plot_runs([*cartpole, debug, cartpole[0]], str(tmp_path / "c.png"), metrics=["eval/return_mean"],
                            reps=300)
    # The presets differ in replay.batch_size, but the preset's name already says so.
    assert [g.label for g in result.groups] == ["cartpole · CartPole-v0 · n=2 seeds, mean ± 95% bootstrap CI",
                                                "debug · CartPole-v0 · n=1 seed (seed 0)"]
    # Within one preset, the field that differs is named.
    other = make_run(tmp_path, "c9", 9, batch_size=128)
    result = plot.plot_runs([*cartpole, other], str(tmp_path / "c.png"), metrics=["eval/return_mean"], reps=300)
    assert [g.label for g in result.groups] == [
        "cartpole · CartPole-v0 · replay.batch_size=256 · n=2 seeds, mean ± 95% bootstrap CI",
        "cartpole · CartPole-v0 · replay.batch_size=128 · n=1 seed (seed 9)",
    ]


def test_longer_seed_is_cut_to_the_common_prefix(tmp_path):
    runs = [make_run(tmp_path, "s0", 0), make_run(tmp_path, "s1", 1, eval_steps=EVAL_STEPS + [3500, 4000])]
    result = plot.plot_runs(runs, str(tmp_path / "c.png"), metrics=["eval/return_mean"], reps=300)
    ax = result.axes["eval/return_mean"]
    (line,) = [l for l in ax.get_lines() if l.get_label() == result.groups[0].label]
    np.testing.assert_array_equal(line.get_xdata(), EVAL_STEPS)
    assert any("shortest seed" in note for note in result.notes)


def test_x_axis_choices_and_reference_lines(tmp_path):
    runs = [make_run(tmp_path, f"s{s}", s) for s in range(2)]
    result = plot.plot_runs(runs, str(tmp_path / "c.png"), metrics=["eval/return_mean", "speed/env_steps_per_s"],
                            x="time", references=[("EfficientZero", 200.0), ("random", 22.0)], reps=300)
    for ax in result.axes.values():
        assert ax.get_xlabel() == "wall-clock time (s)"
    assert result.axes["speed/env_steps_per_s"].get_ylabel() == "env steps / s"
    lines = {line.get_label(): list(line.get_ydata()) for line in result.axes["eval/return_mean"].get_lines()}
    assert lines["EfficientZero = 200"] == [200.0, 200.0] and lines["random = 22"] == [22.0, 22.0]
    result = plot.plot_runs(runs, str(tmp_path / "u.png"), metrics=["eval/return_mean"], x="updates", reps=300)
    assert result.axes["eval/return_mean"].get_xlabel() == "updates (gradient steps)"


def run_cli(*args):
    return run_script("plot.py", *args, timeout=120)


def test_cli_draws_a_png(tmp_path):
    runs = [make_run(tmp_path, f"s{s}", s) for s in range(3)]
    out = str(tmp_path / "fig" / "curves.png")
    proc = run_cli(*runs, "--threshold", "195", "--reference", "EZ=190.5", "--reps", "200", "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == out and open(out, "rb").read(4) == b"\x89PNG"


@pytest.mark.parametrize(
    "case, expected",
    [
        ("no_metrics", "no metrics.jsonl in"),
        ("unknown_metric", "no run logs loss/nope"),
        ("reference_no_value", "--reference expects NAME=VALUE"),
        ("reference_not_a_number", "--reference expects NAME=VALUE"),
        ("threshold_not_a_number", "--threshold"),
        ("bad_x", "--x"),
        ("bad_format", "unknown image format"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, case, expected):
    good = make_run(tmp_path, "good", 0)
    empty = tmp_path / "empty"
    empty.mkdir()
    out = str(tmp_path / "c.png")
    args = {
        "no_metrics": [good, str(empty), "--out", out],
        "unknown_metric": [good, "--metrics", "eval/return_mean", "loss/nope", "--out", out],
        "reference_no_value": [good, "--reference", "EfficientZero", "--out", out],
        "reference_not_a_number": [good, "--reference", "EfficientZero=high", "--out", out],
        "threshold_not_a_number": [good, "--threshold", "high", "--out", out],
        "bad_x": [good, "--x", "episodes", "--out", out],
        "bad_format": [good, "--out", str(tmp_path / "c.nope")],
    }[case]
    proc = run_cli(*args)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("plot.py: error: ") and expected in lines[0], lines[0]
    assert not os.path.exists(out) and not os.path.exists(str(tmp_path / "c.nope"))


def test_bad_input_raises_before_drawing(tmp_path):
    run = make_run(tmp_path, "r", 0)
    with pytest.raises(plot.PlotInputError, match="no run logs loss/nope"):
        plot.plot_runs([run], str(tmp_path / "c.png"), metrics=["loss/nope"])
    assert not (tmp_path / "c.png").exists()
    with pytest.raises(plot.PlotInputError, match="finite number"):
        plot.parse_reference("x=nan")
    assert plot.parse_reference("EfficientZero V2 = 1.5") == ("EfficientZero V2", 1.5)
