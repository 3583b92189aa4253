"""Tests of benchmarks/profile_update.py: the stages partition the Learner's update."""

import json

import pytest

from agents.efficientzero.presets import get_preset
from benchmarks import profile_update as pu
from benchmarks.harness import apply_overrides

TINY = {"learner.unroll_steps": 2, "learner.td_steps": 2, "planner.num_simulations": 2}


def stage_flops(cfg, spec):
    import jax
    import jax.numpy as jnp

    from agents.efficientzero import make_agent, make_model
    from dreamer.learner import Learner

    model = make_model(cfg, spec)
    fns = pu.stage_functions(Learner(model, cfg.learner, cfg.replay, cfg.planner))
    key = jax.ShapeDtypeStruct((2,), jnp.uint32)
    state = jax.eval_shape(make_agent(cfg, spec, model).init, key)
    args = pu.stage_arguments(lambda name, *a: jax.eval_shape(fns[name], *a), state.train, state.replay, key,
                              jax.ShapeDtypeStruct((), jnp.float32))
    assert list(args) == [*pu.STAGES, "update"] == list(fns)
    return {name: pu.xla_cost(fns[name], args[name], unroll_loops=False)["flops"] for name in fns}


SWEPT = {"learner.reanalyze": "sweep", "learner.consistency_targets": "swept"}


@pytest.mark.slow  # compiles every stage of a full update and the whole update
@pytest.mark.parametrize("mode", ["batch", "sweep"])
def test_stage_flops_add_up_to_the_whole_update(mode):
    """Also with targets from the sweep, where the loss reads stored consistency targets:
    a profile whose loss stage computed them online would count more than the update runs."""
    cfg = apply_overrides(get_preset("debug"), {**TINY, **(SWEPT if mode == "sweep" else {})})
    flops = stage_flops(cfg, pu.env_spec(cfg))
    assert pu.STAGES == ("sample", "targets", "bootstrap", "reanalyse", "assemble", "loss_grad", "apply")
    assert flops["loss_grad"] > 0
    if mode == "batch":
        assert flops["reanalyse"] > 0 and flops["bootstrap"] > 0
    assert sum(flops[s] for s in pu.STAGES) == pytest.approx(flops["update"], rel=0.05)


def test_bad_input_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        pu.main(["--preset", "nope"])
    err = [l for l in capsys.readouterr().err.splitlines() if l]
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("profile_update.py: error: argument --preset")


@pytest.mark.slow
def test_script_smoke_debug_scaled(tmp_path):
    out = tmp_path / "p.json"
    pu.main(["--preset", "debug", "--scale", "--no-full", "--rounds", "1", "--target-s", "0", "--out", str(out)])
    (preset,) = json.loads(out.read_text())["presets"]
    flops, timing = preset["flops_timed_size"], preset["timing_ms"]
    assert preset["flops_full"] is None and set(timing) == {*pu.STAGES, "update"}
    assert all(timing[s]["ms"] > 0 for s in timing)
    assert sum(flops[s]["flops"] for s in pu.STAGES) == pytest.approx(flops["update"]["flops"], rel=0.05)
    assert flops["reanalyse"]["per_simulation_flops"] > 0 and flops["act"]["flops"] > 0
    run = preset["full_run"]
    cfg = get_preset("debug")
    assert run["updates"] == int(cfg.loop.replay_ratio * (100_000 - cfg.replay.min_size)) + cfg.loop.extra_updates
    assert run["run_flop"] == pytest.approx(run["updates"] * flops["update"]["flops"]
                                            + run["act_calls"] * flops["act"]["flops"])
