"""Smoke and behaviour tests of benchmarks/search_speed.py at toy size."""

import json

import pytest

from benchmarks import search_speed


def test_quick_smoke_writes_rows(tmp_path, capsys):
    out = tmp_path / "s.json"
    search_speed.main(["--quick", "--models", "mlp", "--batches", "1", "--no-deep-chain", "--out", str(out)])
    record = json.loads(out.read_text())
    rows = record["throughput"]
    assert [(r["search"], r["batch"]) for r in rows] == [("puct", 1), ("gumbel", 1)]
    for r in rows:
        assert r["simulations"] == search_speed.SEARCHES[r["search"]] and r["compile_s"] > 0
        assert r["searches_per_s"] == pytest.approx(r["batch"] / r["median_s"])
        assert 1 <= r["tree_depth_max"] <= r["simulations"]
    assert record["deep_chain"] == [] and record["skipped"] == [] and record["commit"]


@pytest.mark.slow  # searches a deep chain at several depths
def test_max_depth_caps_the_chain_of_noisy_values():
    rows = search_speed.deep_chain("mlp", 4, (40,), (None, 3), reps=(1, 1, 0.0), log=lambda _: None)
    depth = {(r["params"], r["search"], r["max_depth"]): r["tree_depth_max"] for r in rows}
    assert len(rows) == 9  # 3 parameter sets x (pUCT unbounded, pUCT max_depth 3, Gumbel)
    assert all(d <= 3 for (_, s, m), d in depth.items() if m == 3)
    # noisy heads (x10) make unbounded pUCT descend one path far deeper than the fresh init's balanced tree
    assert depth["random heads x10", "puct", None] > 3 * depth["fresh init (zero heads)", "puct", None]


def test_unknown_model_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        search_speed.main(["--models", "mlp,cnn"])
    err = [l for l in capsys.readouterr().err.splitlines() if l]
    assert e.value.code == 2 and len(err) == 1 and "unknown model 'cnn'" in err[0]
