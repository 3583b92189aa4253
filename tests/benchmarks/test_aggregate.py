"""Tests of the Atari-100k aggregator (benchmarks/atari100k/aggregate.py)."""

import filecmp
import json

import numpy as np
import pytest
from helpers import ROOT

from benchmarks.atari100k import aggregate as agg


@pytest.fixture(scope="module")
def reference():
    return agg.load_reference(agg.PACKAGED_REFERENCE)


def test_packaged_reference_is_the_shared_csv(reference):
    assert len(reference) == 26
    shared = ROOT.parent / "shared" / "reference" / "atari100k_scores.csv"
    if shared.exists():
        assert filecmp.cmp(shared, agg.PACKAGED_REFERENCE, shallow=False)


def test_efficientzero_published_aggregates(reference):
    a = agg.reference_aggregates(reference, "efficientzero")
    # Ye et al. 2021, Table 1: mean 1.943 (194.3%), median 1.090 (109.0%).
    assert round(a["mean"], 3) == 1.943
    assert round(a["median"], 3) == 1.090


def test_bbf_published_aggregates(reference):
    a = agg.reference_aggregates(reference, "bbf")
    # Schwarzer et al. 2023 report mean 2.247 / median 0.917; the csv's per-game scores
    # reproduce both to 3 decimals (computed: 2.2474 / 0.9171).
    assert round(a["mean"], 3) == 2.247
    assert round(a["median"], 3) == 0.917


def test_other_reference_aggregates(reference):
    # SPR (Schwarzer et al. 2021): 0.616 / 0.396; MuZero at 100k (as reported in the
    # EfficientZero paper): 0.562 / 0.227. The csv gives the same to 3 decimals.
    spr = agg.reference_aggregates(reference, "spr")
    assert (round(spr["mean"], 3), round(spr["median"], 3)) == (0.616, 0.396)
    mz = agg.reference_aggregates(reference, "muzero_100k")
    assert (round(mz["mean"], 3), round(mz["median"], 3)) == (0.562, 0.227)
    # DreamerV3: PROTOCOL.md says "about 1.1 / 0.5"; the csv gives 1.130 / 0.560.
    d3 = agg.reference_aggregates(reference, "dreamerv3")
    assert abs(d3["mean"] - 1.1) < 0.05 and abs(d3["median"] - 0.55) < 0.06


def test_hns():
    assert agg.human_normalized(30.5, 1.7, 30.5) == pytest.approx(1.0)
    assert agg.human_normalized(1.7, 1.7, 30.5) == pytest.approx(0.0)
    np.testing.assert_allclose(agg.human_normalized([16.1], 1.7, 30.5), [0.5])


def test_iqm_hand_example():
    def iqm(x):  # one run per game: the IQM of the values themselves
        return agg.aggregate_scores(np.asarray(x, dtype=float)[None, :])["iqm"]

    # 8 values: trim 2 each side -> mean of [3, 4, 5, 6] = 4.5; outliers do not matter.
    assert iqm([1, 2, 3, 4, 5, 6, 7, 8]) == pytest.approx(4.5)
    assert iqm([-100, 2, 3, 4, 5, 6, 7, 1000]) == pytest.approx(4.5)
    # 10 values: floor(2.5) = 2 trimmed each side -> mean of the middle 6
    assert iqm(np.arange(10.0)) == pytest.approx(np.mean(np.arange(2, 8)))
    # pooled over the runs of every game of a (runs, games) matrix
    assert agg.aggregate_scores(np.arange(8.0).reshape(2, 4))["iqm"] == pytest.approx(3.5)


def test_unequal_runs_per_game():
    # game 0: runs 0, 2 (mean 1); game 1: one run 4; game 2: runs 1, 2, 6 (mean 3)
    a = agg.aggregate_scores([[0.0, 2.0], [4.0], [1.0, 2.0, 6.0]])
    assert a["mean"] == pytest.approx((1 + 4 + 3) / 3)
    assert a["median"] == pytest.approx(3.0)
    assert a["iqm"] == pytest.approx(np.mean([1.0, 2.0, 2.0, 4.0]))  # 6 pooled runs, 1 trimmed each side
    lo, hi = agg.bootstrap_ci([[0.0, 2.0], [4.0], [1.0, 2.0, 6.0]], reps=300)["mean"]
    assert lo < a["mean"] < hi


def test_aggregate_scores_matrix_and_lists():
    m = np.array([[0.0, 1.0, 2.0], [2.0, 3.0, 4.0]])  # (runs, games)
    a = agg.aggregate_scores(m)
    assert a["mean"] == pytest.approx(2.0)
    assert a["median"] == pytest.approx(2.0)  # per-game means 1, 2, 3
    assert a["iqm"] == pytest.approx(np.mean([1.0, 2.0, 2.0, 3.0]))  # 6 pooled values, 1 trimmed each side
    assert agg.aggregate_scores([m[:, 0], m[:, 1], m[:, 2]]) == pytest.approx(a)


def _synthetic(num_runs, seed=0, games=10):
    rng = np.random.default_rng(seed)
    true = np.linspace(0.1, 2.0, games)
    return true + rng.normal(0, 0.5, size=(num_runs, games))


def test_bootstrap_ci_contains_point_and_shrinks():
    few, many = _synthetic(3), _synthetic(30)
    widths = {}
    for name, scores in (("few", few), ("many", many)):
        point = agg.aggregate_scores(scores)
        ci = agg.bootstrap_ci(scores, reps=2000, seed=1)
        for k in ("mean", "median", "iqm"):
            lo, hi = ci[k]
            assert lo <= point[k] <= hi, (name, k, lo, point[k], hi)
        widths[name] = {k: ci[k][1] - ci[k][0] for k in ci}
    for k in ("mean", "median", "iqm"):
        assert widths["many"][k] < widths["few"][k]
    # one run per game: no variability, the CI collapses to the point
    one = agg.bootstrap_ci(_synthetic(1), reps=200)
    assert one["mean"][0] == pytest.approx(one["mean"][1])
    # reproducible with the same seed
    assert agg.bootstrap_ci(few, reps=300, seed=3) == agg.bootstrap_ci(few, reps=300, seed=3)


def test_bootstrap_is_stratified_per_game():
    # Game 0 always scores 0 and game 1 always 1: whatever runs are drawn per game, the
    # mean is 0.5. Resampling runs across games (unstratified) would move it.
    scores = np.array([[0.0, 1.0]] * 5)
    ci = agg.bootstrap_ci(scores, reps=500)
    assert ci["mean"] == pytest.approx((0.5, 0.5))


def _fake_runs(root, reference):
    spec = {"Breakout": [20.0, 30.0, 40.0], "ms_pacman": [900.0, 1100.0], "ALE/Pong-v5": [-10.0]}
    for game, means in spec.items():
        for seed, m in enumerate(means):
            d = root / game.split("/")[-1] / f"seed_{seed}"
            d.mkdir(parents=True)  # as scripts/evaluate.py writes it, mean_return left for the reader to compute
            (d / "eval.json").write_text(json.dumps({"game": game, "seed": seed, "env_steps": 100_000,
                                                     "episode_returns": [m - 1.0, m + 1.0], "commit": "deadbeef"}))
            with open(d / "metrics.jsonl", "w") as f:
                for k in (1, 2, 3):
                    f.write(json.dumps({"env_steps": k * 1000, "eval/return_mean": m * k / 3}) + "\n")
                    f.write(json.dumps({"env_steps": k * 1000, "train/loss": 0.1}) + "\n")
                f.write("not json\n")
    # junk that must be skipped
    (root / "Nonsense" / "seed_0").mkdir(parents=True)
    (root / "Nonsense" / "seed_0" / "eval.json").write_text(json.dumps({"game": "Nonsense", "seed": 0,
                                                                         "episode_returns": [1.0]}))
    (root / "Breakout" / "notaseed").mkdir()
    (root / "Breakout" / "notaseed" / "eval.json").write_text("{}")
    return spec


def test_discover_runs_and_summary(tmp_path, reference):
    _fake_runs(tmp_path, reference)
    with pytest.warns(UserWarning, match="Nonsense"):
        runs = agg.discover_runs(tmp_path, reference)
    assert sorted((r["game"], r["seed"]) for r in runs) == [
        ("Breakout", 0), ("Breakout", 1), ("Breakout", 2), ("MsPacman", 0), ("MsPacman", 1),
        ("Pong", 0)]
    assert all(r["metrics"] for r in runs)
    s = agg.summarize(runs, reference, reps=300)
    br = s["games"]["Breakout"]["ours"]
    assert br["n"] == 3 and br["mean_return"] == pytest.approx(30.0)
    assert br["hns"] == pytest.approx((30.0 - 1.7) / (30.5 - 1.7))
    ours = s["aggregates"]["ours"]
    assert ours["n_games"] == 3 and ours["n_runs"] == 6
    hns = {g: np.mean(s["games"][g]["ours"]["hns_per_run"]) for g in ("Breakout", "MsPacman", "Pong")}
    assert ours["mean"]["value"] == pytest.approx(np.mean(list(hns.values())))
    assert ours["median"]["value"] == pytest.approx(np.median(list(hns.values())))
    lo, hi = ours["iqm"]["ci95"]
    assert lo <= ours["iqm"]["value"] <= hi
    # references over all 26 games and over our 3 games
    assert round(s["aggregates"]["efficientzero"]["mean"]["value"], 3) == 1.943
    assert s["aggregates"]["efficientzero@our_games"]["n_games"] == 3
    x, y = agg.read_learning_curve(runs[0]["metrics"])
    assert list(x) == [1000, 2000, 3000] and len(y) == 3


def test_cli_writes_json_and_pngs(tmp_path, reference, capsys):
    runs_dir, out = tmp_path / "runs", tmp_path / "out"
    _fake_runs(runs_dir, reference)
    with pytest.warns(UserWarning):
        assert agg.main(["--runs", str(runs_dir), "--out", str(out), "--reps", "200"]) == 0
    text = capsys.readouterr().out
    assert "EfficientZero" in text and "Ours" in text and "IQM" in text
    data = json.loads((out / "aggregate.json").read_text())
    assert data["n_runs"] == 6 and "ours" in data["aggregates"]
    for name in ("hns_per_game.png", "learning_curves.png"):
        png = out / name
        assert png.exists() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_with_zero_runs(tmp_path, capsys):
    out = tmp_path / "out"
    assert agg.main(["--runs", str(tmp_path / "missing"), "--out", str(out), "--reps", "50"]) == 0
    text = capsys.readouterr().out
    assert "No runs found" in text and "1.943" in text and "2.428" in text
    data = json.loads((out / "aggregate.json").read_text())
    assert data["n_runs"] == 0 and "ours" not in data["aggregates"]
    assert not (out / "learning_curves.png").exists()
