"""scripts/train.py, evaluate.py and plot.py as a user runs them: subprocesses over a run directory."""

import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(script, *args, timeout=600):
    cmd = [sys.executable, os.path.join(ROOT, "scripts", script), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def error_line(proc):
    lines = [l for l in proc.stderr.strip().splitlines() if "error:" in l]
    assert len(lines) == 1, proc.stderr
    return lines[0]


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory):
    run_dir = str(tmp_path_factory.mktemp("runs") / "debug")
    proc = run("train.py", "--preset", "debug", "--steps", "240", "--run-dir", run_dir, "--no-progress",
               "--loop.eval_every", "120")
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


def test_smoke_run_directory(debug_run):
    for name in ("config.json", "run.json", "metrics.jsonl", "summary.json", "tb", "checkpoints"):
        assert os.path.exists(os.path.join(debug_run, name)), name
    records = [json.loads(l) for l in open(os.path.join(debug_run, "metrics.jsonl"))]
    evals = [r for r in records if "eval/return_mean" in r]
    assert [r["env_steps"] for r in evals] == [120, 240]
    assert any("loss/total" in r for r in records)
    summary = json.load(open(os.path.join(debug_run, "summary.json")))
    assert summary["env_steps"] == 240 and summary["evaluations"] == 2
    # updates at the replay ratio from min_size on, in whole train calls
    cfg = json.load(open(os.path.join(debug_run, "config.json")))
    expected = int(cfg["loop"]["replay_ratio"] * (240 - cfg["replay"]["min_size"]))
    assert expected - cfg["learner"]["updates_per_call"] < summary["updates"] <= expected
    assert cfg["preset"] == "debug" and cfg["loop"]["env_steps"] == 240


def test_evaluate_and_plot(debug_run, tmp_path):
    out = str(tmp_path / "eval.json")
    proc = run("evaluate.py", debug_run, "--episodes", "2", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.load(open(out))
    assert len(result["episode_returns"]) == 2 and result["env_steps"] == 240
    png = str(tmp_path / "curves.png")
    proc = run("plot.py", debug_run, "--out", png)
    assert proc.returncode == 0, proc.stderr
    assert open(png, "rb").read(4) == b"\x89PNG"


def test_resume_continues_counts(debug_run, tmp_path):
    import shutil

    run_dir = str(tmp_path / "resumed")
    shutil.copytree(debug_run, run_dir)
    proc = run("train.py", "--preset", "debug", "--steps", "360", "--run-dir", run_dir, "--no-progress",
               "--loop.eval_every", "120")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "resuming from 240 env steps" in proc.stderr
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    assert summary["env_steps"] == 360 and summary["evaluations"] == 3
    evals = [json.loads(l)["env_steps"] for l in open(os.path.join(run_dir, "metrics.jsonl")) if "eval/return_mean" in l]
    assert evals == [120, 240, 360]


def test_checkpoint_from_other_config_is_refused(debug_run, tmp_path):
    import shutil

    run_dir = str(tmp_path / "other")
    shutil.copytree(debug_run, run_dir)
    before = sorted(os.listdir(os.path.join(run_dir, "checkpoints")))
    proc = run("train.py", "--preset", "debug", "--run-dir", run_dir, "--no-progress", "--learner.learning_rate", "0.5")
    assert proc.returncode == 2
    assert "learner.learning_rate" in error_line(proc)
    assert sorted(os.listdir(os.path.join(run_dir, "checkpoints"))) == before


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--env", "CartPol-v1"], "did you mean"),
        (["--env", "Pendulum-v1"], "Discrete"),
        (["--env", "FrozenLake-v1"], "flat Box"),
        (["--env", "Breakout"], "Atari"),
        (["--planner.num_simulations", "0"], "num_simulations"),
        (["--replay.batch_size", "100000"], "batch_size"),
        (["--learner.unroll_steps", "5000"], "sample window"),
        (["--learner.learning_rate", "fast"], "expected a float"),
        (["--preset", "cartpol"], "unknown preset"),
        (["--run-dir", "/proc/forbidden/run"], "cannot write run directory"),
    ],
)
def test_bad_input_fails_fast(args, needle, tmp_path):
    proc = run("train.py", "--no-progress", "--run-dir", str(tmp_path / "r"), *args, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert needle in error_line(proc)
    assert not os.path.exists(tmp_path / "r" / "metrics.jsonl")
