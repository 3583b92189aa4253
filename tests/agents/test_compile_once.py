"""The loop's jitted programs (act, observe, train, greedy) are traced and compiled once.

A retrace costs a full compile (seconds on a CPU for these tiny programs, a minute for
the Atari train program) every time an argument's shape, dtype, weak type or kind
changes. The tests use the tiny ``debug`` preset (CartPole, small MLP): one short run of
the real training loop, ``agents.loop.open_run`` (acting, storing, training at the replay ratio, the final
evaluation), then 3 more calls of each program with the same shapes, the act program at
every temperature the loop and evaluation pass. Every program must still hold exactly one
compiled entry (``jitted._cache_size()``: each trace adds an entry, so 1 means one trace
and one compile). Everything is compiled once for the module, to keep it fast.
"""

from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import debug_config

import agents.envs
from agents.cli import parse_config
from agents.efficientzero import make_agent
from agents.loop import open_run, temperature_at
from dreamer.agent import Transition

warnings.filterwarnings("ignore", message="Some donated buffers were not usable")  # some, on a CPU

PROGRAMS = ("act", "observe", "train_step", "greedy")


def entries(trainer) -> dict[str, int]:
    return {name: getattr(trainer, name)._cache_size() for name in PROGRAMS}


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    if not hasattr(jax.jit(lambda x: x), "_cache_size"):
        pytest.skip("this jax has no jitted._cache_size()")
    # 24 vector steps: 16 before min_size, then train calls at the replay ratio; evaluation at the end only
    cfg = debug_config(loop={"env_steps": 96, "eval_every": 10**6})
    run_dir = tmp_path_factory.mktemp("compile_once") / "run"
    trainer = open_run(cfg, make_agent, agents.envs.make, str(run_dir), progress=False, tensorboard=False)
    counters = trainer.run()
    assert counters.env_steps == 96 and counters.evaluations == 1
    assert counters.updates >= 2 * cfg.learner.updates_per_call, counters
    return trainer


def test_loop_compiles_each_program_once(trainer):
    assert entries(trainer) == {name: 1 for name in PROGRAMS}


def test_train_three_more_calls_no_retrace(trainer):
    step = int(trainer.state.train.step)
    for _ in range(3):  # the agent state is donated: pass the returned one back
        trainer.state, metrics = trainer.train_step(trainer.state)
    assert np.isfinite(float(metrics["loss/total"]))
    assert int(trainer.state.train.step) == step + 3 * trainer.cfg.learner.updates_per_call
    assert trainer.train_step._cache_size() == 1


def test_act_every_loop_temperature_no_retrace(trainer):
    """The act program takes the temperature as a traced argument: the schedule's values
    (Python floats) and evaluation's 0.0 share one compile."""
    cfg, envs = trainer.cfg, trainer.envs
    steps = (0, cfg.loop.env_steps // 2, cfg.loop.env_steps - 1)
    temps = [temperature_at(cfg, s) for s in steps] + [0.0]
    assert len(set(temps)) == 4, temps
    envs.reset()
    obs = jnp.asarray(envs.observation())
    for i, temp in enumerate(temps):
        out = trainer.act(trainer.state, jax.random.PRNGKey(i), obs, temp)
    assert out.action.shape == (envs.num_envs,)
    # the evaluation program too, with a new batch of the same shape
    trainer.eval_envs.reset()
    params = trainer.agent.params(trainer.state)
    trainer.greedy(params, jax.random.PRNGKey(9), jnp.asarray(trainer.eval_envs.observation()))
    assert entries(trainer) == {name: 1 for name in PROGRAMS}


def test_observe_three_more_calls_no_retrace(trainer):
    envs, n = trainer.envs, trainer.cfg.env.num_envs
    frames = envs.reset()
    out = trainer.act(trainer.state, jax.random.PRNGKey(0), jnp.asarray(envs.observation()), 1.0)
    action = np.asarray(out.action)
    first = np.ones(n, bool)
    t = int(trainer.state.replay.t)
    for _ in range(3):  # as the loop calls it
        next_frames, reward, terminated, truncated, _ = envs.step(action)
        trainer.state = trainer.observe(trainer.state, Transition(frames, action, reward, terminated, truncated, first, out))
        first, frames = terminated | truncated, next_frames
    assert int(trainer.state.replay.t) == t + 3
    assert trainer.observe._cache_size() == 1


def test_cli_integer_temperature_schedule_does_not_retrace():
    cfg, _ = parse_config(["--preset", "debug", "--loop.temperature_schedule", "[[0.5, 1], [1, 0.5]]"], "test", "")
    traces = []
    probe = jax.jit(lambda temperature: traces.append(1) or temperature)  # the same jit boundary rule as act's
    for steps in (0, cfg.loop.env_steps - 1):  # int 1, then float 0.5
        probe(temperature_at(cfg, steps))
    assert len(traces) == 1, [temperature_at(cfg, s) for s in (0, cfg.loop.env_steps - 1)]
