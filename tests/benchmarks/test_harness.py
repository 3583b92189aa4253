"""Tests of the benchmark harness (benchmarks/harness.py)."""

import json
import time

import jax
import jax.numpy as jnp
import pytest
from benchmarks import harness, tables


def test_machine_describes_cpu_jax_and_devices():
    m = harness.machine()
    assert m["cpu_count"] >= 1 and m["processor"]
    assert m["jax"] == jax.__version__ and m["jaxlib"]
    assert m["devices"] == [str(d) for d in jax.devices()] and m["device"] == m["devices"][0]
    assert m["jax_backend"] == jax.default_backend()
    json.dumps(m)  # JSON as it is


def test_time_calls_counts_and_warmup():
    calls = []

    def call():
        calls.append(None)
        return jnp.ones(3) * len(calls)

    s = harness.time_calls(call, min_reps=4, max_reps=4, target_s=0.0)
    assert s["reps"] == 4 and len(calls) == 4 and "first_call_s" not in s
    assert s["min_s"] <= s["median_s"] <= s["max_s"]
    calls.clear()
    s = harness.time_calls(call, min_reps=2, max_reps=50, target_s=0.05, warmup=True)
    assert len(calls) == s["reps"] + 1 and s["first_call_s"] > 0
    assert s["reps"] >= 2


def test_time_calls_stops_at_target_seconds():
    s = harness.time_calls(lambda: time.sleep(0.02), min_reps=1, max_reps=1000, target_s=0.1)
    assert 1 <= s["reps"] <= 5  # every call takes >= 0.02 s: 0.1 s is reached by the fifth
    assert s["min_s"] >= 0.02


def test_compile_timed_and_compile_log():
    log = harness.CompileLog()
    mark = log.mark()

    def harness_probe(x):
        return jnp.sin(x) * 2

    compiled, seconds = harness.compile_timed(jax.jit(harness_probe), jnp.ones(5))
    assert seconds > 0
    assert float(compiled(jnp.zeros(5))[0]) == 0.0
    counts = log.summary(("harness_probe",), since=mark)["harness_probe"]
    assert counts["traces"] == 1 and counts["backend_compiles"] == 1 and counts["backend_compile_s"] > 0


def test_markdown_table():
    text = tables.markdown_table(["seed", "steps"], [[0, 1504], [1, None]])
    assert text.splitlines() == ["| seed | steps |", "| ---- | ----: |", "| 0    |  1504 |", "| 1    |  None |"]


def test_write_result_fills_commit_date_machine(tmp_path, capsys):
    path = harness.write_result(tmp_path / "sub" / "r.json", {"benchmark": "x", "value": 1.5, "obj": object()},
                                (["a", "b"], [["row", 2]]))
    out = capsys.readouterr().out
    assert "| a   |   b |" in out and f"wrote {path}" in out
    record = json.loads(path.read_text())
    assert record["benchmark"] == "x" and record["value"] == 1.5 and record["obj"].startswith("<object")
    assert record["commit"] == harness.git_commit() and record["date"].endswith("+00:00")
    assert record["machine"]["cpu_count"] >= 1 and "load_average_at_end" in record["machine"]
    # given values are kept
    path = harness.write_result(tmp_path / "r2.json", {"commit": "abc", "machine": {"cpu_count": 1}})
    record = json.loads(path.read_text())
    assert record["commit"] == "abc" and record["machine"]["cpu_count"] == 1


def test_parser_error_is_one_line(capsys):
    parser = harness.Parser(prog="x.py")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as e:
        parser.parse_args(["--n", "two"])
    assert e.value.code == 2
    assert capsys.readouterr().err.splitlines() == ["x.py: error: argument --n: invalid int value: 'two'"]


def test_overrides_and_scale_rules():
    from agents.efficientzero.presets import get_preset

    base = get_preset("atari100k")
    cfg = harness.apply_overrides(base, harness.scale_overrides(base))
    assert (cfg.env.frame_size, cfg.env.grayscale, cfg.network.channels, cfg.replay.batch_size) == (64, True, 16, 16)
    assert cfg.planner.num_simulations == 12 and cfg.network.head_hidden == (16,)
    # the algorithm stays the preset's
    for section, name in (("planner", "search"), ("learner", "unroll_steps"), ("loop", "replay_ratio"),
                          ("learner", "updates_per_call"), ("replay", "min_size"), ("learner", "reanalyze_fraction")):
        assert getattr(getattr(cfg, section), name) == getattr(getattr(base, section), name)
    with pytest.raises(ValueError, match="batch_size"):
        harness.apply_overrides(base, {"replay.batch_size": 10**6})


def test_randomize_heads_redraws_only_zero_matrices():
    params = {"w": jnp.zeros((4, 3)), "v": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    out = harness.randomize_heads(params, jax.random.PRNGKey(0), scale=2.0)
    assert float(jnp.abs(out["w"]).sum()) > 0 and bool((out["v"] == 1).all()) and bool((out["b"] == 0).all())
    assert 0.3 < float(jnp.std(harness.randomize_heads({"w": jnp.zeros((400, 300))}, jax.random.PRNGKey(1))["w"])) * 20 < 3


@pytest.mark.parametrize("with_envs", [False, True])
def test_fill_replay_writes_through_the_agents_observe(with_envs):
    import agents.envs
    from agents.efficientzero import get_preset, make_agent
    from dreamer import replay as replay_lib

    cfg = get_preset("debug")
    envs = agents.envs.make(cfg.env, "train", 0)
    agent = make_agent(cfg, envs.spec)
    observe = jax.jit(agent.observe, donate_argnums=0)
    state, times = harness.fill_replay(observe, jax.jit(agent.init)(jax.random.PRNGKey(0)), envs.spec, cfg.env.num_envs,
                                       5, envs=envs if with_envs else None)
    assert int(replay_lib.size(state.replay)) == 5 * cfg.env.num_envs
    assert len(times["observe_s"]) == 5 and len(times["env_s"]) == (5 if with_envs else 0)
    assert observe._cache_size() == 1
    assert bool(jnp.allclose(state.replay.policy[:, :5].sum(-1), 1.0, atol=1e-5))
    envs.close()


def test_parser_writable(tmp_path, capsys):
    parser = harness.Parser(prog="x.py")
    assert parser.writable(tmp_path / "new" / "r.json") == tmp_path / "new" / "r.json" and (tmp_path / "new").is_dir()
    (tmp_path / "file").write_text("")
    with pytest.raises(SystemExit) as e:
        parser.writable(tmp_path / "file" / "r.json")
    (line,) = capsys.readouterr().err.splitlines()
    assert e.value.code == 2 and line.startswith(f"x.py: error: cannot write {tmp_path / 'file' / 'r.json'}")
