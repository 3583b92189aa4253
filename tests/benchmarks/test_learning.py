"""Tests of the learning-benchmark driver (benchmarks/learning.py).

The fast tests replace scripts/train.py by a stand-in that writes a run directory as
train.py does (config.json, metrics.jsonl, summary.json) with known evaluation curves;
the versus-random evaluation runs for real on a checkpoint of a fresh debug agent.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from benchmarks import learning

ROOT = Path(__file__).resolve().parents[2]

# Seed s: evaluations at 100, 200, 300 env steps; seed 0 reaches 20 at 200 steps, seed 1 never.
FAKE_TRAIN = textwrap.dedent("""
    import argparse, json, os, sys, time
    from agents.efficientzero.presets import get_preset
    from dreamer.config import to_dict
    p = argparse.ArgumentParser()
    for flag in ("--preset", "--seed", "--steps", "--run-dir", "--env"):
        p.add_argument(flag)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-tensorboard", action="store_true")
    args, extra = p.parse_known_args()
    if args.env == "Nope-v0":
        print("train.py: error: unknown env 'Nope-v0'", file=sys.stderr)
        sys.exit(2)
    seed, steps = int(args.seed), int(args.steps)
    os.makedirs(args.run_dir)
    time.sleep(0.3)  # start-up before the run clock
    cfg = to_dict(get_preset(args.preset))
    cfg["seed"] = seed
    json.dump(cfg, open(os.path.join(args.run_dir, "config.json"), "w"))
    json.dump({"extra": extra}, open(os.path.join(args.run_dir, "extra.json"), "w"))
    returns = {0: [10.0, 25.0, 22.0], 1: [5.0, 9.0, 12.0]}[seed]
    with open(os.path.join(args.run_dir, "metrics.jsonl"), "w") as f:
        for i, r in enumerate(returns):
            f.write(json.dumps({"env_steps": 100 * (i + 1), "updates": 10 * i, "time": 4.0 * (i + 1),
                                "eval/return_mean": r, "eval/return_std": 1.0, "eval/episodes": 2}) + "\\n")
            f.write(json.dumps({"env_steps": 100 * (i + 1), "updates": 10 * i, "time": 4.0 * (i + 1) + 0.5,
                                "loss/total": 1.0}) + "\\n")
    json.dump({"env_steps": steps, "updates": 20, "wall_time": 13.0}, open(os.path.join(args.run_dir, "summary.json"), "w"))
""")


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    monkeypatch.setattr(learning, "TRAIN_SCRIPT", script)
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return script


def test_two_seeds_threshold_table_json_and_figure(fake_train, tmp_path, capsys):
    out = tmp_path / "res" / "learning.json"
    code = learning.main(["--preset", "debug", "--seeds", "0", "1", "--steps", "300", "--threshold", "20",
                          "--run-root", str(tmp_path / "runs"), "--out", str(out), "--", "--loop.eval_every", "100"])
    assert code == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "learning" and record["preset"] == "debug" and record["env"] == "CartPole-v0"
    assert record["commit"] and record["machine"]["cpu_count"] >= 1
    assert record["extra_args"] == ["--loop.eval_every", "100"] and record["seeds_reaching_threshold"] == 1
    s0, s1 = record["seeds"]
    assert (s0["seed"], s0["reached_threshold"], s0["env_steps_to_threshold"]) == (0, True, 200)
    # wall-clock from launch = start-up (before config.json) + the run clock at that evaluation (8 s)
    assert s0["startup_s"] >= 0.3 and s0["wall_clock_to_threshold_s"] == pytest.approx(s0["startup_s"] + 8.0, abs=0.11)
    assert (s0["final_eval_return"], s0["best_eval_return"], s0["env_steps"]) == (22.0, 25.0, 300)
    assert s1["reached_threshold"] is False and s1["env_steps_to_threshold"] is None
    assert [c[0] for c in s1["curve"]] == [100, 200, 300]
    assert json.loads((Path(s0["run_dir"]) / "extra.json").read_text())["extra"] == ["--loop.eval_every", "100"]
    printed = capsys.readouterr().out
    assert "| seed | env steps | final eval | best eval | steps to 20 | time to 20 (s) |" in printed
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


def test_default_result_name(fake_train, tmp_path, monkeypatch):
    monkeypatch.setattr(learning, "RESULTS", tmp_path)
    assert learning.main(["--preset", "debug", "--seeds", "1", "--steps", "300", "--run-root", str(tmp_path / "r")]) == 0
    record = json.loads((tmp_path / "learning_debug_CartPole-v0.json").read_text())
    assert record["threshold"] is None and record["seeds"][0]["reached_threshold"] is None


def one_error_line(capsys) -> str:
    lines = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.parametrize("argv, message", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--steps", "0"], "--steps and --episodes must be >= 1"),
    (["--seeds", "1", "1"], "repeats a seed"),
    (["--threshold", "abc"], "invalid float value"),
    (["--out", "/proc/learning.json"], "cannot write /proc/learning.json"),
])
def test_bad_input_one_line_before_any_run(argv, message, fake_train, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        learning.main([*argv, "--run-root", str(tmp_path / "runs")])
    assert e.value.code == 2
    line = one_error_line(capsys)
    assert line.startswith("learning.py: error:") and message in line
    assert not (tmp_path / "runs").exists() or not os.listdir(tmp_path / "runs")


def test_existing_run_refused(fake_train, tmp_path, capsys):
    (tmp_path / "runs" / "seed_0").mkdir(parents=True)
    (tmp_path / "runs" / "seed_0" / "metrics.jsonl").write_text("")
    with pytest.raises(SystemExit) as e:
        learning.main(["--preset", "debug", "--seeds", "0", "--run-root", str(tmp_path / "runs")])
    assert e.value.code == 2 and "already holds a run" in one_error_line(capsys)


def test_train_failure_passes_its_error_line_and_code(fake_train, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        learning.main(["--preset", "debug", "--env", "Nope-v0", "--seeds", "0", "--run-root", str(tmp_path / "runs")])
    assert e.value.code == 2
    assert one_error_line(capsys) == "learning.py: seed 0: train.py: error: unknown env 'Nope-v0'"


def test_fire_fraction():
    assert learning.fire_fraction(np.array([0, 1, 1, 3]), ("NOOP", "FIRE", "RIGHT", "LEFT")) == 0.5
    assert learning.fire_fraction(np.array([2, 3]), ("NOOP", "FIRE", "UPFIRE", "LEFT")) == 0.5  # UPFIRE presses fire
    assert learning.fire_fraction(np.array([0, 1]), ("NOOP", "RIGHT")) is None
    assert learning.fire_fraction(np.array([0, 1]), None) is None


def test_versus_random_on_a_checkpoint(tmp_path):
    import agents.envs
    from agents.efficientzero import get_preset, make_agent
    from agents.loop import open_run

    run_dir = str(tmp_path / "run")
    run = open_run(get_preset("debug"), make_agent, agents.envs.make, run_dir, progress=False, tensorboard=False)
    run.save()
    v = learning.versus_random(run_dir, episodes=3)
    assert len(v["agent"]["returns"]) == len(v["random"]["returns"]) == 3
    assert all(r >= 1 for r in v["agent"]["returns"] + v["random"]["returns"])  # CartPole pays 1 per step
    lo, hi = v["difference_ci95"]
    diff = v["agent"]["mean"] - v["random"]["mean"]
    assert lo <= diff <= hi
    assert v["verdict"] in ("above random", "below random", "not distinguishable from random")
    assert v["fire_fraction"] is None and v["env_steps"] == 0
    assert v["protocol"]["envs"] == 3


def test_versus_random_uses_identical_envs(tmp_path, monkeypatch):
    """Both policies see the same games: a 'trained' agent that plays uniformly at random
    with the random policy's key draws exactly the random policy's returns."""
    import agents.envs
    from agents.efficientzero import get_preset, make_agent
    from agents.loop import open_run

    run_dir = str(tmp_path / "run")
    open_run(get_preset("debug"), make_agent, agents.envs.make, run_dir, progress=False, tensorboard=False).save()
    import jax
    import jax.numpy as jnp

    from dreamer.agent import ActOutput

    def uniform(cfg, spec, model=None):
        agent = make_agent(cfg, spec, model)
        n = spec.num_actions

        def greedy(params, rng, obs):
            zeros = jnp.zeros(obs.shape[0])
            return ActOutput(jax.random.randint(rng, (obs.shape[0],), 0, n), jnp.full((obs.shape[0], n), 1.0 / n),
                             zeros, zeros)

        return agent._replace(greedy=greedy)

    monkeypatch.setattr("agents.efficientzero.make_agent", uniform)
    v = learning.versus_random(run_dir, episodes=4)
    assert v["agent"]["returns"] == v["random"]["returns"]
    lo, hi = v["difference_ci95"]
    assert lo <= 0.0 <= hi and v["verdict"] == "not distinguishable from random"


@pytest.mark.slow
def test_real_training_two_seeds(tmp_path):
    out = tmp_path / "learning.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "learning.py"), "--preset", "debug", "--seeds", "0",
                           "1", "--steps", "160", "--threshold", "1", "--vs-random", "--episodes", "2", "--run-root",
                           str(tmp_path / "runs"), "--out", str(out), "--", "--loop.eval_every", "80"],
                          capture_output=True, text=True, cwd=ROOT, timeout=900,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(out.read_text())
    for row in record["seeds"]:
        assert row["env_steps"] == 160 and [c[0] for c in row["curve"]] == [80, 160]
        assert row["env_steps_to_threshold"] == 80  # CartPole returns are >= 1
        assert row["wall_clock_to_threshold_s"] > row["startup_s"] > 0
        assert len(row["vs_random"]["agent"]["returns"]) == 2
    assert out.with_suffix(".png").exists()
