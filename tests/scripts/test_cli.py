"""The config command line (agents/cli.py) as scripts/train.py and evaluate.py use it.

In-process calls for most cases (fast); a few subprocesses check what a user sees end to end.
"""

import dataclasses
import os
import re

import pytest
from helpers import load_script, run_script

from agents.cli import parse_config
from dreamer.config import Config

train = load_script("train")
evaluate = load_script("evaluate")


def every_field_flag():
    """``--section.field`` for every leaf field, walked from the dataclasses themselves."""
    flags = []
    for f in dataclasses.fields(Config):
        default = getattr(Config(), f.name)
        if dataclasses.is_dataclass(default):
            flags += [f"--{f.name}.{sub.name}" for sub in dataclasses.fields(default)]
        else:
            flags.append(f"--{f.name}")
    return flags


def help_entries(text):
    """``{flag: description}`` from tyro's help (the ``(default: ...)`` part removed).

    tyro draws boxes (``│ --flag TYPE`` / ``│       description``) on a UTF-8 stream and
    plain indented text elsewhere; both put a flag near the left edge and its
    description, wrapped, further in.
    """
    entries, current = {}, None
    for line in text.splitlines():
        inner = line.rstrip().rstrip("│").lstrip("│")
        content = inner.strip()
        indent = len(inner) - len(inner.lstrip())
        if content.startswith("-") and not set(content) <= {"-", "─"} and indent <= 2:
            invocation, *rest = re.split(r"\s{2,}", content, maxsplit=1)
            current = rest
            for name in invocation.split(", "):
                entries[name.split()[0]] = current
        elif content and indent >= 4 and current is not None:
            current.append(content)
        else:  # box edges, section titles and rules, a section's own description
            current = None
    return {flag: re.sub(r"\s*\((default: .*|required)\)$", "", " ".join(parts).strip()).strip() for flag, parts in entries.items()}


def refusal(capsys, argv, main=None):
    """Runs a refused command line in-process; returns its one stderr line."""
    with pytest.raises(SystemExit) as exit_info:
        if main is None:
            parse_config(argv, "train.py", "test", train.TrainFlags)
        else:
            main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


def run(script, *args):
    return run_script(script, *args, timeout=120)


# --help --------------------------------------------------------------------------------------


def test_help_describes_every_field(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")  # one column of boxes (wider terminals get several side by side)
    with pytest.raises(SystemExit) as exit_info:
        parse_config(["--help"], "train.py", "Train.", train.TrainFlags)
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    entries = help_entries(out)
    flags = every_field_flag()
    assert len(flags) > 60 and "--loop.env_steps" in flags
    missing = [f for f in flags if f not in entries]
    assert not missing, f"not in --help: {missing}"
    undescribed = [f for f in flags if not entries[f]]
    assert not undescribed, f"no description in --help (add a comment in dreamer/config.py): {undescribed}"
    for flag in ("--env", "--steps", "--seed", "--preset", "--run-dir", "--no-progress", "--no-tensorboard"):
        assert entries.get(flag), flag
    assert "atari100k-gumbel" in out  # the presets are named


@pytest.mark.parametrize("edge", ["│", ""])
def test_help_entries_parser_sees_a_missing_description(edge):
    lines = [" a options", " ---", "  A section.", "  ---", "  --a.b INT", "        (default: 1)",
             "  --a.c, --c INT", "        says c", "        at length (default: 2)", "", " b options", "  --b.d STR"]
    text = "\n".join(f"{edge}{line[1:] if edge else line}{edge}" for line in lines)
    assert help_entries(text) == {"--a.b": "", "--a.c": "says c at length", "--c": "says c at length", "--b.d": ""}


def test_train_help_subprocess():
    proc = run("train.py", "--help")
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    for flag in ("--learner.learning_rate", "--loop.temperature_schedule", "--run-dir", "--steps"):
        assert flag in proc.stdout


# Refusals: one line, exit 2, the flag as typed ---------------------------------------------------


@pytest.mark.parametrize(
    "argv, line",
    [
        (["--steps", "abc"], "train.py: error: --steps: expected an integer, got 'abc'"),
        (["--steps=abc"], "train.py: error: --steps: expected an integer, got 'abc'"),
        (["--loop.env_steps", "1.5"], "train.py: error: --loop.env_steps: expected an integer, got '1.5'"),
        (["--seed", "x"], "train.py: error: --seed: expected an integer, got 'x'"),
        (["--steps"], "train.py: error: --steps: expected an integer, got nothing"),
        (["--learner.learning_rate", "fast"], "train.py: error: --learner.learning_rate: expected a float, got 'fast'"),
        (["--loop.thresholds", "high"], "train.py: error: --loop.thresholds: expected a list of floats, got 'high'"),
        (["--planner.max_depth", "deep"], "train.py: error: --planner.max_depth: expected an integer or None, got 'deep'"),
        (["--env.grayscale", "maybe"], "train.py: error: --env.grayscale: expected true or false, got 'maybe'"),
        (["--network.hidden", "64", "x"], "train.py: error: --network.hidden: expected a list of integers, got '64 x'"),
        (["--network.value_support", "1", "2"],
         "train.py: error: --network.value_support: expected 3 values (float float int), got '1 2'"),
        (["--planner.num_simulations", "-1"], "train.py: error: --planner.num_simulations must be an integer >= 0, got -1"),
        (["--planner.num-simulations", "-1"], "train.py: error: --planner.num-simulations must be an integer >= 0, got -1"),
        (["--steps", "0"], "train.py: error: --steps must be > 0, got 0"),
        (["--planner.search", "beam"], "train.py: error: --planner.search must be one of ('puct', 'gumbel'), got 'beam'"),
        (["--loop.env_stepz", "3"], "train.py: error: unrecognized argument --loop.env_stepz; did you mean --loop.env_steps?"),
        (["--learning_rate", "0.1"], "train.py: error: unrecognized argument --learning_rate; did you mean --learner.learning_rate?"),
        (["--run_dri", "x"], "train.py: error: unrecognized argument --run_dri; did you mean --run-dir?"),
        (["--zzz"], "train.py: error: unrecognized argument --zzz"),
        (["stray"], "train.py: error: unexpected argument 'stray'"),
        (["--preset", "cartpol"],
         "train.py: error: --preset: unknown preset 'cartpol' (known: atari-cpu, atari-debug, atari100k, atari100k-gumbel, "
         "cartpole, debug, minatar); did you mean cartpole?"),
    ],
)
def test_refusal_is_one_line_naming_the_flag_typed(capsys, argv, line):
    assert refusal(capsys, argv) == line


def test_cross_section_refusal_names_the_flags(capsys):
    line = refusal(capsys, ["--preset", "debug", "--replay.batch_size", "100000"])
    assert line.startswith("train.py: error: --replay.batch_size (100000) must not exceed --replay.min_size (64)")


def test_refusals_of_train_main_come_before_any_compute(capsys, tmp_path):
    run_dir = str(tmp_path / "run")
    line = refusal(capsys, ["--env.num_envs", "0", "--run-dir", run_dir], main=train.main)
    assert line == "train.py: error: --env.num_envs must be > 0, got 0"
    assert not os.path.exists(run_dir)


def test_evaluate_refusals(capsys):
    assert refusal(capsys, [], main=evaluate.main) == "evaluate.py: error: missing RUN_DIR"
    assert refusal(capsys, ["runs/x", "--episodes", "0"], main=evaluate.main) == "evaluate.py: error: --episodes must be >= 1, got 0"
    assert refusal(capsys, ["runs/x", "--episodes", "two"], main=evaluate.main) == (
        "evaluate.py: error: --episodes: expected an integer or None, got 'two'")
    assert refusal(capsys, ["runs/x", "--episode", "2"], main=evaluate.main) == (
        "evaluate.py: error: unrecognized argument --episode; did you mean --episodes?")


def test_refusal_subprocess_is_exactly_one_line():
    proc = run("train.py", "--steps", "abc")
    assert proc.returncode == 2
    assert proc.stderr == "train.py: error: --steps: expected an integer, got 'abc'\n"
    assert proc.stdout == ""


def test_unknown_env_subprocess_suggests_nothing_far():
    proc = run("train.py", "--env", "NoSuchEnv-v0", "--run-dir", os.devnull)
    assert proc.returncode == 2
    assert proc.stderr == "train.py: error: unknown gymnasium env id 'NoSuchEnv-v0'\n"


# What parses ----------------------------------------------------------------------------------


def parse(*argv):
    cfg, flags = parse_config(list(argv), "train.py", "test", train.TrainFlags)
    return cfg, flags


def test_preset_and_shortcuts():
    cfg, flags = parse("--preset", "debug", "--env", "Acrobot-v1", "--seed", "3", "--steps", "123")
    assert (cfg.preset, cfg.env.id, cfg.seed, cfg.loop.env_steps) == ("debug", "Acrobot-v1", 3, 123)
    assert cfg.replay.batch_size == 16  # the debug preset's value, not the dataclass default
    assert flags == train.TrainFlags()
    cfg, _ = parse("--preset=atari-debug")
    assert cfg.preset == "atari-debug" and cfg.env.grayscale is True
    cfg, _ = parse()
    assert cfg.preset == "cartpole" and cfg.loop.env_steps == 10_000


def test_full_flags_hyphen_spellings_and_script_flags():
    cfg, flags = parse("--learner.learning_rate", "0.01", "--loop.env-steps", "50", "--planner.search", "puct",
                       "--run-dir", "runs/x", "--no-progress", "--no_tensorboard")
    assert (cfg.learner.learning_rate, cfg.loop.env_steps, cfg.planner.search) == (0.01, 50, "puct")
    assert flags == train.TrainFlags(run_dir="runs/x", no_progress=True, no_tensorboard=True)


@pytest.mark.parametrize(
    "argv, field, value",
    [
        (["--network.hidden", "64", "32"], "network.hidden", (64, 32)),
        (["--network.hidden", "64,32"], "network.hidden", (64, 32)),
        (["--network.hidden", "[64, 32]"], "network.hidden", (64, 32)),
        (["--network.hidden=[64]"], "network.hidden", (64,)),
        (["--network.hidden", "[]"], "network.hidden", ()),
        (["--network.value_support", "-5", "5", "11"], "network.value_support", (-5.0, 5.0, 11)),
        (["--network.value_support", "[-5, 5, 11]"], "network.value_support", (-5.0, 5.0, 11)),
        (["--loop.temperature_schedule", "[[0.5, 1], [1, 0.5]]"], "loop.temperature_schedule", ((0.5, 1.0), (1.0, 0.5))),
        (["--loop.temperature_schedule", "0.5", "1", "1", "0.5"], "loop.temperature_schedule", ((0.5, 1.0), (1.0, 0.5))),
        (["--env.grayscale", "true"], "env.grayscale", True),
        (["--env.grayscale", "Yes"], "env.grayscale", True),
        (["--network.value_prefix", "0"], "network.value_prefix", False),
        (["--network.value_prefix", "False"], "network.value_prefix", False),
        (["--loop.thresholds", "195"], "loop.thresholds", (195.0,)),
        (["--loop.thresholds", "100", "195"], "loop.thresholds", (100.0, 195.0)),
        (["--planner.max_depth", "none"], "planner.max_depth", None),
        (["--planner.max_depth", "10"], "planner.max_depth", 10),
        (["--planner.qtransform", "min_max"], "planner.qtransform", "min_max"),
        (["--env.max_episode_steps", "null"], "env.max_episode_steps", None),
    ],
)
def test_values_parse(argv, field, value):
    cfg, _ = parse(*argv)
    section, name = field.split(".")
    got = getattr(getattr(cfg, section), name)
    assert got == value and type(got) is type(value)
    if isinstance(value, tuple) and value and isinstance(value[0], tuple):
        assert all(type(x) is float for pair in got for x in pair)


# Env-id suggestions ---------------------------------------------------------------------------


def test_env_id_suggestions_are_close_ones_only():
    import ale_py
    import gymnasium as gym

    from agents.envs.gym import EnvError, check_env_id

    gym.register_envs(ale_py)  # hundreds of Atari ids: the suggestions must not drift to them
    check_env_id("CartPole-v1")
    cases = {
        "CartPol-v1": "did you mean CartPole-v1, CartPole-v0?",
        "cartpole": "did you mean CartPole-v0, CartPole-v1?",
        "Acrobot": "did you mean Acrobot-v1?",
        "NoSuchEnv-v0": None,
        "Foo": None,
    }
    for env_id, hint in cases.items():
        with pytest.raises(EnvError) as e:
            check_env_id(env_id)
        message = str(e.value)
        if hint is None:
            assert message == f"unknown gymnasium env id {env_id!r}"
        else:
            assert message.endswith(hint), message
