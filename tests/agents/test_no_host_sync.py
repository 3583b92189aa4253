"""No host sync inside the training loop's hot path: with a pure JAX env, chunks of acting,
env steps, storing and updates run back to back without reading a single device value on
the host; the statistics they accumulate reach the host at log time."""

from __future__ import annotations

import jax
import pytest
from fakes import make_fake_fused_envs
from helpers import count_host_reads, debug_config

import agents.loop
from agents.efficientzero import make_agent
from agents.loop import open_run

CALLBACKS = {"pure_callback", "io_callback", "debug_callback", "callback", "outside_call"}


def primitives(jaxpr) -> set[str]:
    names = set()
    for eqn in jaxpr.eqns:
        names.add(eqn.primitive.name)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (list, tuple)) else [value]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    names |= primitives(inner)
    return names


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    cfg = debug_config(
        env={"num_envs": 4, "num_eval_envs": 2, "eval_episodes": 2},
        replay={"min_size": 32, "batch_size": 16},
        loop={"env_steps": 4_000, "eval_every": 4_000, "log_every_s": 1e9, "checkpoint_every_s": 1e9},
    )
    return open_run(cfg, make_agent, make_fake_fused_envs, str(tmp_path_factory.mktemp("sync") / "run"),
                    progress=False, tensorboard=False)


def test_the_train_program_has_no_host_callback(run):
    jaxpr = jax.make_jaxpr(run.agent.train)(run.state).jaxpr
    found = primitives(jaxpr)
    assert "scan" in found  # the updates are scanned inside the program
    assert not found & CALLBACKS, found & CALLBACKS


def test_the_counter_sees_host_reads(run):
    with count_host_reads(agents.loop) as count:
        agents.loop.np.asarray(run.state.train.step)
        float(run.state.train.step)
        jax.device_get(run.state.train.step)
    assert count[0] >= 3


@pytest.mark.slow  # compiles and runs the fused loop under a host-read trap
def test_fused_chunks_and_updates_read_nothing_on_the_host(run):
    steps = run._fused_steps()
    while run.counters.updates < 2 * run.agent.updates_per_call:  # compile both chunk programs and train
        next(steps)
    jax.block_until_ready(run.state)
    updates, env_steps = run.counters.updates, run.counters.env_steps
    with count_host_reads(agents.loop) as count:
        done = sum(next(steps) for _ in range(40))
    assert count[0] == 0
    assert done >= 40 * 4 and run.counters.env_steps == env_steps + done
    assert run.counters.updates >= updates + 10 * run.agent.updates_per_call
    # What the chunks accumulated on the device arrives at log time, and the chunks go on.
    record = run.log()
    assert record["train/episode_return"] >= 0 and run.counters.episodes > 0
    assert "search/root_q_spread" in record and "loss/total" in record
    for _ in range(3):
        next(steps)
    assert run.log()["env_steps"] == run.counters.env_steps
