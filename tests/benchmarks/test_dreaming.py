"""Tests of the dreaming sweep (benchmarks/dreaming.py): which points it runs with which
flags, and what it reads off run directories (scores at the budgets, env steps to the
threshold with censoring, what a doubling of S saves), on run directories written here
with known evaluation curves. The runs themselves are scripts/train.py's (tested there);
one tiny real sweep is marked slow."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import dreaming as D

ROOT = Path(__file__).resolve().parents[2]


def test_grid_skips_what_means_nothing():
    points = D.grid(["CartPole-v0", "MinAtar/Breakout"], [0, 4, 16], list(D.KINDS))
    names = {(p.env, p.name) for p in points}
    # a host env has no simulator kind; at S = 0 there is no search to re-run or to run in a simulator
    assert names == {("CartPole-v0", n) for n in ("learned-S0", "learned-S4", "learned-S16",
                                                  "learned+reanalyse-S4", "learned+reanalyse-S16")} | {
        ("MinAtar/Breakout", n) for n in ("learned-S0", "learned-S4", "learned-S16", "learned+reanalyse-S4",
                                          "learned+reanalyse-S16", "simulator-S4", "simulator-S16")}


def flag(flags, name):
    return flags[flags.index(name) + 1]


def test_point_flags():
    setting = D.ENVS["MinAtar/Breakout"]
    prior = D.point_flags(D.Point("MinAtar/Breakout", "learned", 0), setting, 4)
    assert flag(prior, "--planner.num_simulations") == "0" and flag(prior, "--planner.max_num_considered_actions") == "1"
    assert flag(prior, "--learner.reanalyze_fraction") == "0" and "--planner.model" not in prior
    two = D.point_flags(D.Point("MinAtar/Breakout", "learned+reanalyse", 2), setting, 4)
    assert flag(two, "--planner.max_num_considered_actions") == "2" and flag(two, "--learner.reanalyze") == "sweep"
    sim = D.point_flags(D.Point("MinAtar/Breakout", "simulator", 16), setting, 4)
    assert flag(sim, "--planner.model") == "simulator" and flag(sim, "--planner.max_num_considered_actions") == "4"
    assert flag(sim, "--learner.reanalyze_fraction") == "0"  # the replay keeps frames, not game states


def write_run(run_dir: Path, curve: dict[int, float], env_steps: int, wall: float, stopped: bool = False):
    run_dir.mkdir(parents=True)
    with open(run_dir / "metrics.jsonl", "w") as f:
        for step, ret in curve.items():
            f.write(json.dumps({"env_steps": step, "loss/total": 1.0}) + "\n")
            f.write(json.dumps({"env_steps": step, "eval/return_mean": ret}) + "\n")
    (run_dir / "summary.json").write_text(json.dumps({"env_steps": env_steps, "wall_time": wall, "stopped": stopped}))


def test_table_from_run_directories(tmp_path, capsys):
    env = "CartPole-v0"  # budgets 2k, 4k, 6k; threshold 195; evaluations every 500 env steps
    root, res = tmp_path / "runs", tmp_path / "res"
    runs = {
        # S = 0: seed 0 reaches 195 at 4,000; seed 1 never does
        "learned-S0": [({2000: 50.0, 4000: 195.0, 6000: 200.0}, 6000, 30.0),
                       ({2000: 20.0, 4000: 60.0, 6000: 100.0}, 6000, 40.0)],
        # S = 4: both reach it (1,000 and 2,008: an evaluation a few steps past its due step) and stop
        "learned-S4": [({1000: 196.0, 1500: 199.0}, 1500, 10.0, True),
                       ({1000: 150.0, 2008: 195.5, 2500: 198.0}, 2500, 20.0, True)],
        # S = 16: two reach it at 1,000; the third is still running (at 1,500 of 6,000) and has not
        "learned-S16": [({1000: 195.0, 1500: 200.0}, 1500, 12.0, True), ({1000: 199.0, 1500: 200.0}, 1500, 14.0, True),
                        ({1000: 20.0, 1500: 30.0}, 1500, 5.0)],
    }
    for name, seeds in runs.items():
        for seed, run in enumerate(seeds):
            write_run(root / "CartPole-v0" / name / f"seed_{seed}", *run)

    assert D.main(["--table", "--envs", env, "--sims", "0", "4", "16", "--kinds", "learned", "--seeds", "0", "1", "2",
                   "--run-root", str(root), "--results-dir", str(res)]) == 0
    record = json.loads((res / "dreaming.json").read_text())
    assert (res / "dreaming.png").stat().st_size > 10_000
    pts = {p["sims"]: p for p in record["points"]}
    assert set(pts) == {0, 4, 16} and all(p["kind"] == "learned" for p in pts.values())

    s0 = pts[0]
    assert [s["scores"] for s in s0["seeds"]] == [{"2000": 50.0, "4000": 195.0, "6000": 200.0},
                                                   {"2000": 20.0, "4000": 60.0, "6000": 100.0}]
    assert s0["scores"]["6000"]["mean"] == pytest.approx(150.0) and s0["scores"]["6000"]["n"] == 2
    # the seed that never reached 195 counts at the budget, and the mean says it is a lower bound
    assert s0["reached"] == 1 and s0["steps_to_threshold_censored"]
    assert s0["steps_to_threshold"]["mean"] == pytest.approx((4000 + 6000) / 2)
    assert s0["seconds"] == pytest.approx(70.0)  # host env: seeds one after another

    s4 = pts[4]
    # a run that stopped at the threshold keeps its last score at the later budgets
    assert s4["seeds"][0]["scores"] == {"2000": 199.0, "4000": 199.0, "6000": 199.0}
    assert s4["seeds"][1]["scores"]["2000"] == 195.5  # due at 2,000, landed at 2,008
    assert s4["seeds"][1]["steps_to_threshold"] == 2008 and not s4["steps_to_threshold_censored"]
    assert s4["steps_to_threshold"]["ci95"][0] < s4["steps_to_threshold"]["mean"] < s4["steps_to_threshold"]["ci95"][1]

    # a run still going that has not reached the threshold yet is no lower bound: it counts nowhere
    assert pts[16]["reached"] == pts[16]["of"] == 2 and not pts[16]["steps_to_threshold_censored"]
    assert pts[16]["steps_to_threshold"]["mean"] == 1000 and pts[16]["scores"]["6000"]["n"] == 2

    # S = 0 is censored and has no search, so the only step measured is 4 -> 16
    (worth,) = record["worth"][env]
    assert (worth["from_sims"], worth["to_sims"]) == (4, 16)
    assert worth["real_steps_saved"] == pytest.approx((1000 + 2008) / 2 - 1000)
    assert worth["real_steps_saved_per_added_simulation"] == pytest.approx(worth["real_steps_saved"] / 12)
    out = capsys.readouterr().out
    assert "5000+" in out and "1/2" in out  # the censored mean is marked, with the seeds that reached it


def test_functional_point_seconds_are_the_groups():
    records = [{"wall_time_s": 100.0}, {"wall_time_s": 101.0}]
    assert D.point_seconds(records, D.ENVS["MinAtar/Breakout"]) == 101.0
    assert D.point_seconds(records, D.ENVS["CartPole-v0"]) == 201.0
    assert D.point_seconds([{"wall_time_s": None}], D.ENVS["CartPole-v0"]) is None


@pytest.mark.parametrize("args, message", [
    (["--sims", "0", "-1"], "--sims: expected distinct counts >= 0, got 0 -1"),
    (["--envs", "MinAtar/Pong"], "unknown env 'MinAtar/Pong'"),
    (["--seeds", "1", "1"], "--seeds: expected distinct seeds >= 0, got 1 1"),
])
def test_bad_input_is_one_line(args, message, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "dreaming.py"), *args,
                           "--results-dir", str(tmp_path)], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 2 and proc.stdout == ""
    assert len(proc.stderr.splitlines()) == 1 and message in proc.stderr, proc.stderr


@pytest.mark.slow  # four tiny train.py runs
def test_a_tiny_sweep_runs_resumes_and_tabulates(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks" / "dreaming.py"), "--envs", "MinAtar/Breakout", "--sims", "0", "2",
           "--kinds", "learned", "simulator", "--seeds", "0", "1", "--steps", "1000",
           "--run-root", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res")]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert first.returncode == 0, first.stderr[-3000:]
    record = json.loads((tmp_path / "res" / "dreaming.json").read_text())
    assert sorted((p["kind"], p["sims"]) for p in record["points"]) == [("learned", 0), ("learned", 2), ("simulator", 2)]
    assert all(p["scores"]["1000"]["n"] == 2 for p in record["points"])
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert again.returncode == 0 and "seeds 0 1 in" not in again.stdout  # finished points are not run again
