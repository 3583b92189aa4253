"""scripts/train.py, evaluate.py and plot.py as a user runs them: subprocesses over a run directory."""

import json
import os
import subprocess
import sys

import pytest
from helpers import ROOT, SCRIPTS, checkpoint_steps, eval_steps, read_metrics
from helpers import run_script as run


def error_line(proc):
    """The refusal, which must be all of stderr: one line, no warning or traceback around it."""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "error:" in lines[0], proc.stderr
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
    records = read_metrics(debug_run)
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
    assert eval_steps(run_dir) == [120, 240, 360]


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
        (["--planner.num_simulations", "-1"], "num_simulations"),
        (["--replay.batch_size", "100000"], "batch_size"),
        (["--learner.unroll_steps", "5000"], "sample window"),
        (["--learner.learning_rate", "fast"], "expected a float"),
        (["--preset", "cartpol"], "unknown preset"),
        (["--run-dir", "/proc/forbidden/run"], "cannot write run directory"),
        (["--run-dir", "{file}/run"], "cannot write run directory"),
    ],
)
def test_bad_input_fails_fast(args, needle, tmp_path):
    (tmp_path / "a_file").write_text("a regular file, not a directory\n")
    args = [a.replace("{file}", str(tmp_path / "a_file")) for a in args]
    proc = run("train.py", "--no-progress", "--run-dir", str(tmp_path / "r"), *args, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert needle in error_line(proc)
    assert not os.path.exists(tmp_path / "r" / "metrics.jsonl")


def test_kill_9_during_training_then_resume(tmp_path):
    """SIGKILL mid-run: the rerun resumes from the last complete checkpoint, and the finished
    run's counts add up as if it had never stopped (its curve has no repeated stretch)."""
    import signal
    import time

    run_dir = str(tmp_path / "killed")
    args = ["--preset", "debug", "--steps", "3000", "--run-dir", run_dir, "--no-progress", "--no-tensorboard",
            "--loop.eval_every", "600", "--loop.checkpoint_every_s", "1"]
    proc = subprocess.Popen([sys.executable, str(SCRIPTS / "train.py"), *args],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        steps = checkpoint_steps(run_dir)
        if steps and steps[-1] >= 160:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed:\n" + proc.stderr.read()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    saved = max(checkpoint_steps(run_dir))  # complete ones only are named by their step
    assert 160 <= saved < 3000

    proc = run("train.py", *args)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"resuming from {saved} env steps" in proc.stderr
    summary = json.load(open(os.path.join(run_dir, "summary.json")))
    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    assert summary["env_steps"] == 3000 and summary["evaluations"] == 5
    expected = int(cfg["loop"]["replay_ratio"] * (3000 - cfg["replay"]["min_size"]))
    assert expected - cfg["learner"]["updates_per_call"] < summary["updates"] <= expected
    assert eval_steps(run_dir) == list(range(600, 3001, 600))


def test_same_seed_gives_identical_metrics(tmp_path):
    """Two runs with the same seed and config log the same losses and returns, record by record."""
    records = []
    for name in ("a", "b"):
        run_dir = str(tmp_path / name)
        proc = run("train.py", "--preset", "debug", "--steps", "160", "--run-dir", run_dir, "--no-progress",
                   "--no-tensorboard", "--loop.eval_every", "80", "--loop.log_every_s", "1e-6",
                   "--loop.replay_ratio", "1.0")
        assert proc.returncode == 0, proc.stderr[-3000:]
        drop = ("time", "speed/env_steps_per_s", "speed/updates_per_s")
        records.append([{k: v for k, v in r.items() if k not in drop} for r in read_metrics(run_dir)])
    a, b = records
    trained = [r for r in a if "loss/total" in r]
    assert len(trained) >= 10 and trained[-1]["updates"] >= 40  # enough updates to drift if anything were off
    assert a == b


def _corrupt(checkpoint_dir, damage):
    """Flips 64 bytes in the middle of every file of a checkpoint, keeping sizes, or garbles
    every array data file (tensorstore then fails mid-read: the case that left asyncio tracebacks)."""
    for d, _, fs in os.walk(checkpoint_dir):
        for name in [os.path.join(d, f) for f in fs]:
            with open(name, "r+b") as f:
                data = bytearray(f.read())
                if damage == "garbage" and os.path.basename(d) == "d":
                    data = os.urandom(len(data))
                elif damage == "flipped_bytes":
                    mid = len(data) // 2
                    data[mid:mid + 64] = bytes(255 - x for x in data[mid:mid + 64])
                f.seek(0)
                f.write(data)


@pytest.mark.parametrize("damage", ["flipped_bytes", "garbage"])
def test_corrupt_checkpoints_are_refused_and_left_alone(debug_run, tmp_path, damage):
    """Relaunching a run whose checkpoints all fail to load: exit 2, one line on stderr (no
    fallback warnings, no asyncio tracebacks from orbax's abandoned reads), nothing written."""
    import hashlib
    import shutil

    run_dir = str(tmp_path / "corrupt")
    shutil.copytree(debug_run, run_dir)
    ckpt = os.path.join(run_dir, "checkpoints")
    steps = checkpoint_steps(run_dir)
    assert steps
    for step in steps:
        _corrupt(os.path.join(ckpt, str(step)), damage)

    def digest():
        h = hashlib.sha256()
        for d, _, fs in sorted(os.walk(run_dir)):
            for f in sorted(fs):
                h.update(f.encode() + open(os.path.join(d, f), "rb").read())
        return h.hexdigest()

    before = digest()
    proc = run("train.py", "--preset", "debug", "--steps", "360", "--run-dir", run_dir, "--no-progress",
               "--loop.eval_every", "120")
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-5000:]
    assert lines[0].startswith("train.py: error: cannot resume from") and f"({len(steps)} corrupt)" in lines[0]
    assert digest() == before
