"""Tests of the MinAtar-100k benchmark (benchmarks/minatar.py).

The aggregation and verdicts run on synthetic game results. Training is replaced by a
stand-in for scripts/train.py that writes a run directory as train.py does (config.json from
the same command line, metrics.jsonl with evaluations, summary.json), logs each launch and,
when asked, stops halfway the first time as a signalled run does. The random row is played for
real on Breakout with 2 games, and one end-to-end test runs the real train.py for 512 env steps.
"""

import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from benchmarks import minatar

ROOT = Path(__file__).resolve().parents[2]

FAKE_TRAIN = textwrap.dedent("""
    import json, os, sys
    from agents.cli import parse_config
    from dreamer.config import to_dict
    argv = sys.argv[1:]
    run_dir = argv[argv.index("--run-dir") + 1]
    rest = [a for i, a in enumerate(argv) if a not in ("--run-dir", "--no-progress", "--no-tensorboard", "--no-plot")
            and (i == 0 or argv[i - 1] != "--run-dir")]
    cfg, _ = parse_config(rest, "train.py", "")
    resumed = os.path.exists(os.path.join(run_dir, "config.json"))
    with open(os.environ["FAKE_CALLS"], "a") as f:
        f.write(json.dumps({"seed": cfg.seed, "game": cfg.env.id, "resumed": resumed}) + "\\n")
    os.makedirs(run_dir, exist_ok=True)
    json.dump(to_dict(cfg), open(os.path.join(run_dir, "config.json"), "w"))
    budget = cfg.loop.env_steps
    stop = os.environ.get("FAKE_STOP_SEED") == str(cfg.seed) and not resumed
    end = budget // 2 if stop else budget
    with open(os.path.join(run_dir, "metrics.jsonl"), "a") as f:
        for step in range(cfg.loop.eval_every, end + 1, cfg.loop.eval_every):
            mean = 5.0 + cfg.seed + step / budget
            f.write(json.dumps({"env_steps": step, "updates": step // 8, "time": step / 100, "eval/return_mean": mean,
                                "eval/return_std": 1.0, "eval/episodes": cfg.env.eval_episodes,
                                "eval/capped_fraction": 0.0, "eval/action_0": 0.25, "eval/action_1": 0.75}) + "\\n")
    json.dump({"env_steps": end, "updates": end // 8, "wall_time": 1.5},
              open(os.path.join(run_dir, "summary.json"), "w"))
""")


@pytest.fixture
def fake_train(tmp_path, monkeypatch):
    script = tmp_path / "fake_train.py"
    script.write_text(FAKE_TRAIN)
    calls = tmp_path / "calls.jsonl"
    monkeypatch.setattr(minatar, "TRAIN_SCRIPT", script)
    monkeypatch.setenv("PYTHONPATH", str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    monkeypatch.setenv("FAKE_CALLS", str(calls))
    monkeypatch.delenv("FAKE_STOP_SEED", raising=False)
    return lambda: [json.loads(line) for line in calls.read_text().splitlines()] if calls.exists() else []


@pytest.fixture
def fake_random(monkeypatch):
    """compute_random replaced by a known row; returns the list of protocols it was called with."""
    seen = []

    def compute(cfg, protocol):
        seen.append(protocol)
        return {"protocol": protocol, "returns": [0.0, 1.0] * 15, "mean": 0.5, "std": 0.5, "episodes": 30}

    monkeypatch.setattr(minatar, "compute_random", compute)
    return seen


def one_error_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# ----------------------------------------------------------------------------- aggregation


def synthetic(game, finals, stds=None, random=(0.5, 0.5), budget=100_000, episodes=30, walls=None, extra=()):
    stds = stds or [1.0] * len(finals)
    walls = walls or [6.0] * len(finals)
    seeds = []
    for i, (mean, std, wall) in enumerate(zip(finals, stds, walls)):
        curve = [[step, step / 100, mean * step / budget, std] for step in range(budget // 4, budget + 1, budget // 4)]
        seeds.append({"seed": i, "final_eval": {"env_steps": budget, "return_mean": mean, "return_std": std,
                                               "episodes": episodes}, "wall_clock_min": wall, "curve": curve})
    return {"benchmark": "minatar-100k", "game": game, "preset": "minatar", "budget_env_steps": budget,
            "extra_args": list(extra), "seeds": seeds,
            "random": {"mean": random[0], "std": random[1], "episodes": 30, "returns": []}}


def write_games(folder: Path, records):
    folder.mkdir(parents=True, exist_ok=True)
    for record in records:
        (folder / f"minatar_{record['game']}.json").write_text(json.dumps(record))


FIVE = [
    synthetic("Asterix", [2.0, 3.0, 4.0]),  # >= DQN@0.5M (1), < DQN@5M (17)
    synthetic("Breakout", [10.0, 11.0, 12.0], walls=[6.0, 16.0, 7.0]),  # >= 8 and >= 10; one seed over 15 min
    synthetic("Freeway", [20.0, 21.0, 22.0]),  # < 42.5 and < 50
    synthetic("Seaquest", [25.0, 20.0, 30.0]),  # >= 0.5 and >= 20
    # seed 2 is 0.5 above random but with a wide spread: Welch's interval straddles 0
    synthetic("SpaceInvaders", [40.0, 38.0, 2.0], stds=[1.0, 1.0, 3.0], random=(1.5, 2.0)),  # mean 26.7 >= 25, < 43
]


def test_table_verdicts_and_must_show(tmp_path, capsys):
    res = tmp_path / "res"
    write_games(res, FIVE)
    assert minatar.main(["--table", "--results-dir", str(res)]) == 0
    record = json.loads((res / "minatar.json").read_text())
    games = record["games"]
    assert set(games) == set(minatar.GAMES)
    expected = {"Asterix": (True, False, True), "Breakout": (True, True, True), "Freeway": (False, False, True),
                "Seaquest": (True, True, True), "SpaceInvaders": (True, False, False)}
    for game, (half, full, random) in expected.items():
        g = games[game]
        assert (g["reaches_dqn_0.5M"], g["reaches_dqn_5M"], g["every_seed_beats_random"]) == (half, full, random), game
        assert g["protocol_issues"] == []
        lo, hi = g["mean_ci95"]
        assert min(g["final_returns"]) <= lo <= g["mean"] <= hi <= max(g["final_returns"])
        t_lo, t_hi = g["mean_ci95_t"]
        assert t_lo < lo and hi < t_hi  # the t interval is the wider one with 3 seeds
    assert games["Breakout"]["mean"] == pytest.approx(11.0)
    assert [p["beats_random"] for p in games["SpaceInvaders"]["vs_random"]] == [True, True, False]
    assert games["Breakout"]["seeds_within_wall_target"] == 2
    must = record["must_show"]
    assert must["reaches_dqn_0.5M"] == {"count": 4, "of": 5, "needed": 4, "met": True}
    assert must["reaches_dqn_5M"] == {"count": 2, "of": 5, "needed": 2, "met": True}
    assert must["every_seed_beats_random"] == {"count": 4, "of": 5, "needed": 5, "met": False}
    assert must["all_met"] is False and must["missing_games"] == [] and must["off_protocol_games"] == {}
    assert record["references"]["Freeway"]["dqn_0.5M"] == 42.5 and record["reference_ranges"]["Freeway"]["dqn_0.5M"] == [40, 45]
    assert record["references"]["Seaquest"]["ppo_10M"] is None
    assert any("MuZero" in n for n in record["notes"]) and any("sticky actions" in n and "gymnax" in n for n in record["notes"])
    out = capsys.readouterr().out
    assert "| Breakout " in out and "11.0 [" in out and "42.5 (40-45)" in out and "6.0 / 16.0 / 7.0 (2/3)" in out
    assert "games reaching DQN@0.5M: 4 of 5 complete games (need 4 of 5): met" in out
    assert "every seed beats random: 4 of 5 complete games (need 5 of 5): NOT met" in out
    assert "No MuZero-family agent" in out
    assert (res / "minatar.png").read_bytes()[:4] == b"\x89PNG"


def test_must_show_stays_open_until_five_games_on_protocol(tmp_path, capsys):
    res = tmp_path / "res"
    short = synthetic("Breakout", [10.0, 11.0, 12.0], budget=1024)
    two = synthetic("Asterix", [2.0, 3.0])
    write_games(res, [short, two, *FIVE[2:4]])  # SpaceInvaders missing
    assert minatar.main(["--table", "--results-dir", str(res)]) == 0
    must = json.loads((res / "minatar.json").read_text())["must_show"]
    assert must["missing_games"] == ["SpaceInvaders"]
    assert must["complete_games"] == ["Freeway", "Seaquest"]
    assert set(must["off_protocol_games"]) == {"Asterix", "Breakout"}
    assert "1024 env steps, not 100,000" in must["off_protocol_games"]["Breakout"]
    assert "2 seeds, fewer than 3" in must["off_protocol_games"]["Asterix"]
    assert must["reaches_dqn_0.5M"] == {"count": 1, "of": 2, "needed": 4, "met": None}
    assert must["all_met"] is None
    out = capsys.readouterr().out
    assert "| Breakout * " in out and ": open" in out and "missing games: SpaceInvaders" in out


def test_table_with_no_results(tmp_path, capsys):
    assert minatar.main(["--table", "--results-dir", str(tmp_path)]) == 0
    record = json.loads((tmp_path / "minatar.json").read_text())
    assert record["games"] == {} and record["must_show"]["missing_games"] == list(minatar.GAMES)
    assert not (tmp_path / "minatar.png").exists()


@pytest.mark.parametrize("a, b", [((3.0, 1.0, 30), (2.5, 1.0, 30)), ((3.0, 1.0, 30), (2.0, 0.2, 30)),
                                  ((1.0, 2.0, 30), (0.5, 0.5, 20)), ((10.0, 0.0, 30), (0.0, 0.0, 30))])
def test_welch_interval_agrees_with_scipy(a, b):
    lo, hi = minatar.welch_interval(*a, *b)
    assert lo <= a[0] - b[0] <= hi
    if a[1] == b[1] == 0:
        assert lo == hi == a[0] - b[0]
        return
    # scipy's Welch test from sample standard deviations; the metrics hold population ones
    sample = lambda m, s, n: (m, s * np.sqrt(n / (n - 1)), n)
    p = stats.ttest_ind_from_stats(*sample(*a), *sample(*b), equal_var=False).pvalue
    assert (p < 0.05) == (lo > 0 or hi < 0)


# ----------------------------------------------------------------------------- training and resuming


def base(tmp_path, *more):
    return ["Breakout", "--steps", "400", "--run-root", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res"),
            *more, "--", "--loop.eval_every", "100"]


def test_resume_and_finished_seeds_are_not_retrained(fake_train, fake_random, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("FAKE_STOP_SEED", "1")
    with pytest.raises(SystemExit) as e:  # seed 1 stops halfway, as a signalled run does
        minatar.main(base(tmp_path, "--seeds", "0", "1"))
    assert e.value.code == 1
    assert "Breakout seed 1: stopped at 200 of 400 env steps; run the same command to resume" in one_error_line(capsys)
    assert [(c["seed"], c["resumed"]) for c in fake_train()] == [(0, False), (1, False)]
    assert not (tmp_path / "res" / "minatar_Breakout.json").exists()

    assert minatar.main(base(tmp_path, "--seeds", "0", "1")) == 0
    assert [(c["seed"], c["resumed"]) for c in fake_train()] == [(0, False), (1, False), (1, True)]
    out = capsys.readouterr().out
    assert "Breakout seed 0: finished in" in out and "not trained again" in out and "Breakout seed 1: resuming" in out
    record = json.loads((tmp_path / "res" / "minatar_Breakout.json").read_text())
    s0, s1 = record["seeds"]
    assert (s0["launches"], s1["launches"]) == (1, 2)
    launches = json.loads((tmp_path / "runs" / "minatar" / "Breakout" / "seed_1" / "launches.json").read_text())
    assert [(x["env_steps_before"], x["env_steps_after"], x["exit_code"]) for x in launches] == [(0, 200, 0), (200, 400, 0)]
    assert s1["wall_clock_min"] == pytest.approx(sum(x["wall_s"] for x in launches) / 60, abs=0.01)
    assert s1["final_eval"] == {"env_steps": 400, "return_mean": 7.0, "return_std": 1.0, "episodes": 30,
                                "capped_fraction": 0.0, "action_fractions": [0.25, 0.75]}
    assert [p[0] for p in s1["curve"]] == [100, 200, 300, 400]
    assert record["summary"]["final_returns"] == [6.0, 7.0]
    assert record["extra_args"] == ["--loop.eval_every", "100"] and record["budget_env_steps"] == 400
    assert "400 env steps, not 100,000" in record["summary"]["protocol_issues"]
    assert (tmp_path / "res" / "minatar.json").exists()  # the table is refreshed after a game

    assert minatar.main(base(tmp_path, "--seeds", "0", "1")) == 0  # all finished: nothing launched
    assert len(fake_train()) == 3
    assert len(fake_random) == 1  # the random row was computed once, then read from the game's JSON


def test_random_row_is_cached_per_protocol(fake_train, tmp_path, monkeypatch, capsys):
    common = ["--steps", "200", "--run-root", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res"),
              "--", "--loop.eval_every", "100", "--env.eval_episodes", "2", "--env.num_eval_envs", "2"]
    assert minatar.main(["Breakout", "--seeds", "0", *common]) == 0  # played for real: 2 random games of Breakout
    path = tmp_path / "res" / "minatar_Breakout.json"
    first = json.loads(path.read_text())["random"]
    assert first["episodes"] == 2 and len(first["returns"]) == 2 and first["sticky_action_prob"] == 0.1
    assert first["mean"] == pytest.approx(np.mean(first["returns"]))
    assert first["protocol"]["env"]["id"] == "MinAtar/Breakout" and first["protocol"]["episodes"] == 2

    def refuse(cfg, protocol):
        raise AssertionError("the random row should come from the cache")

    monkeypatch.setattr(minatar, "compute_random", refuse)
    assert minatar.main(["Breakout", "--seeds", "1", *common]) == 0  # a new seed, same evaluation envs
    assert json.loads(path.read_text())["random"] == first

    seen = []
    monkeypatch.setattr(minatar, "compute_random", lambda cfg, protocol: seen.append(protocol) or {**first, "protocol": protocol})
    other = ["Breakout", "--steps", "200", "--seeds", "0", "--run-root", str(tmp_path / "runs3"),
             "--results-dir", str(tmp_path / "res"), "--", "--loop.eval_every", "100", "--env.eval_episodes", "3",
             "--env.num_eval_envs", "3"]
    assert minatar.main(other) == 0  # other evaluation envs: computed again
    assert len(seen) == 1 and seen[0]["episodes"] == 3


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize("argv, message", [
    ([], "name a game"),
    (["Pong"], "unknown game 'Pong'"),
    (["Breakout", "--table"], "--table aggregates the results that exist: give it no game"),
    (["--table", "--seeds", "1"], "--table takes only --preset and --results-dir"),
    (["Breakout", "--steps", "0"], "--steps must be >= 1"),
    (["Breakout", "--seeds", "1", "1"], "--seeds repeats a seed"),
    (["Breakout", "--seeds", "-1"], "--seeds must be >= 0"),
    (["Breakout", "--preset", "nope"], "unknown preset 'nope'"),
    (["Breakout", "--", "--seed", "3"], "--seed after -- is set by minatar.py: use --seeds"),
    (["Breakout", "--", "--env=MinAtar/Freeway"], "--env after -- is set by minatar.py"),
    (["Breakout", "--", "--loop.nope", "1"], "--loop.nope"),
    (["Breakout", "--", "--loop.eval_every", "abc"], "--loop.eval_every"),
    (["Breakout", "--results-dir", "/proc/minatar"], "cannot write /proc/minatar/minatar.json"),
])
def test_bad_input_one_line_before_anything_runs(argv, message, fake_train, tmp_path, capsys):
    paths = [] if "--results-dir" in argv else ["--results-dir", str(tmp_path / "res")]
    paths += [] if "--table" in argv else ["--run-root", str(tmp_path / "runs")]
    cut = argv.index("--") if "--" in argv else len(argv)
    argv = [*argv[:cut], *paths, *argv[cut:]]
    with pytest.raises(SystemExit) as e:
        minatar.main(argv)
    assert e.value.code == 2
    line = one_error_line(capsys)
    assert line.startswith("minatar.py: error:") and message in line
    assert fake_train() == [] and not (tmp_path / "runs").exists()


def test_runs_of_another_budget_or_config_are_refused(fake_train, fake_random, tmp_path, capsys):
    assert minatar.main(base(tmp_path, "--seeds", "0")) == 0
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:  # same run root, another budget
        minatar.main(["Breakout", "--steps", "800", "--seeds", "0", "--run-root", str(tmp_path / "runs"),
                      "--results-dir", str(tmp_path / "res"), "--", "--loop.eval_every", "100"])
    assert e.value.code == 2 and "holds a run of 400 env steps, not 800" in one_error_line(capsys)
    with pytest.raises(SystemExit) as e:  # same budget, another learning rate
        minatar.main(base(tmp_path, "--seeds", "0") + ["--learner.learning_rate", "0.0123"])
    line = one_error_line(capsys)
    assert e.value.code == 2 and "holds a run of another config (learner.learning_rate: " in line
    assert "asked 0.0123)" in line
    assert len(fake_train()) == 1


def test_train_failure_passes_its_error_line_and_code(tmp_path, monkeypatch, capsys):
    script = tmp_path / "failing_train.py"
    script.write_text("import sys\nprint('train.py: error: boom', file=sys.stderr)\nsys.exit(3)\n")
    monkeypatch.setattr(minatar, "TRAIN_SCRIPT", script)
    with pytest.raises(SystemExit) as e:
        minatar.main(base(tmp_path, "--seeds", "0"))
    assert e.value.code == 3
    assert one_error_line(capsys) == "minatar.py: Breakout seed 0: train.py: error: boom"
    launches = json.loads((tmp_path / "runs" / "minatar" / "Breakout" / "seed_0" / "launches.json").read_text())
    assert launches[0]["exit_code"] == 3


# ----------------------------------------------------------------------------- end to end


@pytest.mark.slow  # train.py processes end to end
def test_end_to_end_with_train_py(tmp_path):
    """The real train.py and random row on a tiny budget (about 15 s), then a second launch that trains nothing."""
    import subprocess

    argv = [sys.executable, str(ROOT / "benchmarks" / "minatar.py"), "Breakout", "--steps", "512", "--seeds", "0",
            "--run-root", str(tmp_path / "runs"), "--results-dir", str(tmp_path / "res"),
            "--", "--loop.eval_every", "256", "--env.eval_episodes", "2", "--env.num_eval_envs", "2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    first = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    assert first.returncode == 0, first.stderr
    record = json.loads((tmp_path / "res" / "minatar_Breakout.json").read_text())
    (seed,) = record["seeds"]
    assert seed["env_steps"] >= 512 and seed["final_eval"]["episodes"] == 2 and [p[0] for p in seed["curve"]] == [256, 512]
    assert seed["wall_clock_min"] > 0 and record["random"]["episodes"] == 2
    assert (tmp_path / "res" / "minatar.png").exists()
    second = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=ROOT)
    assert second.returncode == 0 and "not trained again" in second.stdout and "(cached)" in second.stdout


def _peers(finals, env_steps=minatar.BUDGET):
    return {"env_steps": env_steps, "peers": {name: {"seeds": [{"final_eval": {"mean": f}} for f in fs]}
                                              for name, fs in finals.items()}}


def test_versus_peers_counts_only_a_clear_lead_at_our_budget(capsys):
    summary = {"final_returns": [7.0, 7.3, 6.5]}
    clear = minatar.versus_peers(summary, _peers({"dqn": [3.0, 3.2, 2.9], "ppo": [4.0, 4.1, 3.8]}))
    assert clear["ahead_of_every_peer"] and clear["ci_above_every_peer"] and clear["env_steps_match"]
    np.testing.assert_allclose(clear["peers"]["dqn"]["difference"], 6.9333 - 3.0333, atol=1e-3)
    close = minatar.versus_peers(summary, _peers({"dqn": [3.0, 3.2, 2.9], "pqn": [5.0, 8.5, 6.5]}))
    assert close["ahead_of_every_peer"] and not close["ci_above_every_peer"]  # ahead on the mean, CI spans 0
    behind = minatar.versus_peers(summary, _peers({"pqn": [8.0, 8.0, 8.0]}))
    assert not behind["ahead_of_every_peer"]
    short = minatar.versus_peers(summary, _peers({"dqn": [1.0, 1.0, 1.2]}, env_steps=20_000))
    lines = minatar.peer_lines({"Breakout": short})
    assert "not counted" in lines[0] and "0 of 0" in lines[1]
    assert minatar.versus_peers(summary, None) is None
