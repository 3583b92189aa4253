"""Tests of benchmarks/throughput.py: the full-run projection, bad input, a toy-size smoke."""

import json

import pytest

from agents.efficientzero.presets import get_preset
from benchmarks import throughput


def test_projection_counts_updates_as_the_loop():
    cfg = get_preset("atari100k")
    p = throughput.projection(cfg, 8, env_ms=4.0, act_ms=10.0, add_ms=2.0, updates_per_s=10.0,
                              loop={"agent_steps_per_s": 5.0})
    assert p["updates"] == 118_000
    assert p["sequential_s"] == pytest.approx(100_000 / 8 * 0.016 + 11_800)
    assert p["measured_loop_s"] == pytest.approx(2_000 / 8 * 0.016 + 98_000 / 5.0 + 20_000 / 10.0)
    assert p["sequential_min"] == pytest.approx(p["sequential_s"] / 60)
    assert "measured_loop_s" not in throughput.projection(cfg, 8, 4.0, 10.0, 2.0, 10.0, None)


def test_bad_input_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        throughput.main(["--loop-steps", "0"])
    err = [l for l in capsys.readouterr().err.splitlines() if l]
    assert e.value.code == 2 and err == ["throughput.py: error: --loop-steps must be >= 1, got 0"]


@pytest.mark.slow  # a throughput.py run end to end
def test_smoke_debug_scaled(tmp_path):
    out = tmp_path / "t.json"
    throughput.main(["--preset", "debug", "--scale", "--loop-steps", "32", "--out", str(out)])
    (row,) = json.loads(out.read_text())["results"]
    cfg = get_preset("debug")
    assert row["env"]["vector_steps"] == cfg.replay.min_size // cfg.env.num_envs - 1
    assert row["act"]["ms"] > 0 and row["train"]["loss_finite"] and row["train"]["updates_per_s"] > 0
    assert row["loop"]["agent_steps"] == 32 and row["loop"]["compiled_during_timed_window"] == []
    assert row["retraced"] == {} and row["dispatch_cache_entries"] == {"act": 1, "observe": 1, "train": 1}
    assert row["projection_full_run"]["measured_loop_min"] > 0
