"""Tests of the memory soak's analysis (benchmarks/memory_soak.py) on synthetic samples,
and a short real soak (slow)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import memory_soak

ROOT = Path(__file__).resolve().parents[2]
MIB = 1024


def samples(rss_mib, full_at=400, eval_at_t=10.0, checkpoint_at_t=12.0, dt=0.5, steps_per_s=20):
    """One sample every ``dt`` s with RSS ``rss_mib(t)``; the buffer is full at ``full_at``
    env steps (t = 20 s), a post-full evaluation is logged from ``eval_at_t`` and a
    post-full checkpoint committed from ``checkpoint_at_t`` (both before full: the baseline
    waits for the buffer)."""
    out = []
    for i in range(int(100 / dt)):
        t = i * dt
        steps = int(steps_per_s * t)
        out.append({"t": t, "env_steps": steps, "rss_kb": int(rss_mib(t) * MIB), "threads": 30, "children": 0,
                    "post_full_eval": t >= eval_at_t and steps >= full_at,
                    "checkpoints": [full_at] if t >= checkpoint_at_t and steps >= full_at else []})
    return out


def test_flat_memory_passes():
    row = memory_soak.analyse(samples(lambda t: 1000 + 20 * ((t * 2) % 2)), [], 400, 2000, window_s=5.0)
    assert row["baseline_sample"]["env_steps"] == 400 and row["baseline"]["rss_mib"] == 1020.0
    assert row["growth_pct"] == 0.0 and row["steady_growth_pct"] == 0.0 and row["pass"]
    assert row["releases"] == [] and not row["steady"]["after_release"]
    assert row["loop_end_sample"]["env_steps"] < 2000 <= 2000  # the loop ends before the last step is logged


def test_release_after_baseline_then_steady_leak_fails():
    # 1,500 MiB until t = 40 (compile heap), a release to 900, then a 10% rise by the end.
    rss = lambda t: 1500 if t < 40 else 900 * (1 + 0.1 * (t - 40) / 60)  # noqa: E731
    row = memory_soak.analyse(samples(rss), [(50.0, "Finished XLA compilation of jit(x)")], 400, 2000, window_s=5.0)
    assert row["growth_pct"] < -30 and row["pass_growth"]  # growth alone would call this a pass
    assert [r["env_steps"] for r in row["releases"]] == [800] and row["steady"]["after_release"]
    assert row["steady_growth_pct"] > 5 and not row["pass_steady_growth"] and not row["pass"]
    peaks = row["quarter_peaks_mib"]
    assert peaks[0] == 1500.0 and peaks[1:] == sorted(peaks[1:]) and peaks[3] > peaks[1]  # rising after the release
    assert row["slope_mib_per_1000_env_steps"] < 0  # the least-squares slope is dominated by the release
    assert [c["env_steps"] for c in row["compiles_after_baseline"]] == [1000] and row["compiles_total"] == 1


def test_too_short_to_tell():
    with pytest.raises(RuntimeError, match="run longer"):
        memory_soak.analyse(samples(lambda t: 1000), [], 400, 2000, window_s=60.0)
    with pytest.raises(RuntimeError, match="no sample after the buffer was full"):
        memory_soak.analyse(samples(lambda t: 1000), [], 10**6, 2 * 10**6, window_s=5.0)


def test_bad_input_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        memory_soak.main(["--window-s", "0"])
    err = [l for l in capsys.readouterr().err.splitlines() if l]
    assert e.value.code == 2 and err == ["memory_soak.py: error: --scale, --interval and --window-s must be > 0"]


@pytest.mark.slow
def test_short_cartpole_soak(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "memory_soak.py"), "--presets", "cartpole",
                           "--scale", "0.4", "--window-s", "3", "--out", str(tmp_path), "--tag", "t"],
                          capture_output=True, text=True, cwd=ROOT, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "memory_soak_t.json").read_text())
    (row,) = record["runs"]
    assert row["env_steps"] == 4000 and row["buffer_full_at_env_steps"] == 2000
    assert row["baseline_sample"]["env_steps"] >= 2000 and row["samples"]
    assert (tmp_path / "memory_soak_cartpole.png").exists()
