"""The Atari-100k path end to end at toy size: train (atari-debug), checkpoint, evaluate, aggregate."""

import json
import os
import subprocess
import sys

import pytest

from helpers import ROOT


def launch(runs, *train_args):
    cmd = [sys.executable, "-m", "benchmarks.atari100k.run", "Breakout", "0", "--preset", "atari-debug",
           "--runs", str(runs), "--episodes", "1", "--no-progress", "--",
           "--steps", "160", "--no-tensorboard", "--loop.eval_every", "160",
           "--env.eval_max_episode_steps", "60", "--env.max_episode_steps", "200", *train_args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)


@pytest.mark.slow  # several train.py and evaluate.py processes on ALE
def test_atari_debug_train_checkpoint_evaluate_aggregate(tmp_path):
    from benchmarks.atari100k import aggregate

    runs = tmp_path / "runs"
    proc = launch(runs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = runs / "atari-debug" / "Breakout" / "seed_0"
    assert any(n.isdigit() for n in os.listdir(run_dir / "checkpoints"))
    result = json.loads((run_dir / "eval.json").read_text())
    assert result["game"] == "Breakout" and result["env_steps"] == 160 and len(result["episode_returns"]) == 1
    config = json.loads((run_dir / "config.json").read_text())
    assert config["env"]["frame_size"] == 64 and config["network"]["kind"] == "conv"

    # Launching the same (game, seed) again finds the run finished and evaluated.
    again = launch(runs)
    assert again.returncode == 0 and "nothing to do" in again.stderr

    summary = aggregate.run(runs / "atari-debug", tmp_path / "out", reps=50, quiet=True)
    assert summary["n_runs"] == 1 and summary["aggregates"]["ours"]["games"] == ["Breakout"]
    ours = summary["games"]["Breakout"]["ours"]
    assert ours["returns"] == [result["mean_return"]] and ours["env_steps"] == [160]
    assert summary["off_budget_games"] == ["Breakout"]
    saved = json.loads((tmp_path / "out" / "aggregate.json").read_text())
    assert saved["aggregates"]["ours"]["n_runs"] == 1
    assert (tmp_path / "out" / "hns_per_game.png").read_bytes()[:4] == b"\x89PNG"
