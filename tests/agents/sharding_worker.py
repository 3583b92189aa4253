"""Run by tests/agents/test_sharding.py in a process of its own, with
``XLA_FLAGS=--xla_force_host_platform_device_count=4`` (a process's device count is fixed when
JAX starts): the same updates on one device and on a 4-device data mesh, and where the arrays
lie. Prints one JSON line."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import tempfile

import jax
import jax.numpy as jnp
import numpy as np

from agents.efficientzero import make_agent
from agents.efficientzero.presets import get_preset
from agents.envs import make as make_envs
from agents.loop import FusedEnv, fused_chunk, open_run
from dreamer import sharding

UPDATES = 50


def small_config(reanalyze: str):
    cfg = get_preset("minatar")
    return cfg.replace(
        env=dataclasses.replace(cfg.env, id="MinAtar/Breakout", num_envs=8, num_eval_envs=4, eval_episodes=4),
        network=dataclasses.replace(cfg.network, latent_dim=32, hidden=(64,), head_hidden=(32,), lstm_hidden=16,
                                    projection_hidden=32, projection_out=32, predictor_hidden=16),
        planner=dataclasses.replace(cfg.planner, num_simulations=4, max_num_considered_actions=2),
        # alpha 0: draws that do not depend on priorities, whose last bits differ between the
        # programs and would now and then flip a draw (tests/agents/test_sharding.py)
        replay=dataclasses.replace(cfg.replay, capacity=4_096, batch_size=32, min_size=256, alpha=0.0),
        learner=dataclasses.replace(cfg.learner, updates_per_call=1, target_update_interval=10,
                                    **{"sweep": {"reanalyze": "sweep", "sweep_chunk": 256},
                                       "batch": {"reanalyze_fraction": 0.5},
                                       "none": {"reanalyze_fraction": 0.0}}[reanalyze]),
        loop=dataclasses.replace(cfg.loop, env_steps=1_024, eval_every=1_024, checkpoint_every_s=1e9),
    )


def filled_state(cfg):
    """An agent state whose replay holds 512 env steps of acting (one device)."""
    fenv = make_envs(cfg.env, "train", 0).functional
    agent = make_agent(cfg, fenv.spec)
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    env_state, frame = jax.jit(fenv.init)(jax.random.PRNGKey(1))
    carry = FusedEnv(env_state, frame, jnp.ones(fenv.num_envs, bool), jax.random.PRNGKey(2),
                     jnp.zeros(2), {k: jnp.zeros(()) for k in ("search/root_q_spread", "search/policy_entropy")})
    state, _, _ = jax.jit(functools.partial(fused_chunk, agent, fenv, 64, 0))(state, carry, 1.0, 0.0)
    return agent, jax.device_get(state)


def losses(agent, state, mesh):
    """Per-update losses of UPDATES updates from ``state``, on ``mesh`` (None: one device)."""
    train = jax.jit(agent.train)
    if mesh is not None:
        shapes = jax.eval_shape(lambda: state)
        train = jax.jit(agent.train, out_shardings=(agent.shardings(shapes, mesh), sharding.replicated(mesh)))
        state = sharding.place(state, agent.shardings(shapes, mesh))
    out = []
    for _ in range(UPDATES):
        if mesh is not None:
            with jax.set_mesh(mesh):
                state, metrics = train(state)
        else:
            state, metrics = train(state)
        out.append({k: float(v) for k, v in metrics.items() if k.startswith("loss/")})
    return out, state


def spec(x) -> list:
    return [str(a) for a in x.sharding.spec] if isinstance(x.sharding, jax.sharding.NamedSharding) else ["single"]


def main(parts: list[str]) -> int:
    """``parts``: reanalysis variants to compare (none, batch, sweep) and/or loop."""
    assert jax.device_count() == 4, jax.devices()
    result = {"devices": jax.device_count()}
    mesh = sharding.make_mesh(4)
    for reanalyze in [p for p in ("none", "batch", "sweep") if p in parts]:
        cfg = small_config(reanalyze)
        agent, state = filled_state(cfg)
        one, _ = losses(agent, state, None)
        four, sharded = losses(agent, state, mesh)
        result[reanalyze] = {"one_device": one, "four_devices": four,
                             "replay_frame_spec": spec(sharded.replay.frame),
                             "replay_frame_devices": len(sharded.replay.frame.sharding.device_set),
                             "replay_frame_shard_shape": list(sharded.replay.frame.addressable_shards[0].data.shape),
                             "replay_frame_shape": list(sharded.replay.frame.shape),
                             "params_specs": sorted({str(spec(x)) for x in jax.tree_util.tree_leaves(sharded.train.params)})}
    if "loop" in parts:
        result.update(whole_loop(mesh))
    print(json.dumps(result))
    return 0


def whole_loop(mesh) -> dict:
    """The whole loop on the mesh (fused acting, training, evaluation, a checkpoint), then
    resumed on one device."""
    result = {}
    cfg = small_config("batch")
    with tempfile.TemporaryDirectory() as tmp:
        run = open_run(cfg, make_agent, make_envs, tmp, progress=False, tensorboard=False, mesh=mesh)
        counters = run.run()
        result["loop"] = {"env_steps": counters.env_steps, "updates": counters.updates,
                          "evaluations": counters.evaluations, "replay_frame_spec": spec(run.state.replay.frame),
                          "env_state_frame_spec": spec(run.fused.frame),
                          "checkpoints": run.checkpointer.steps()}
        # resumed on one device: the checkpoint does not care how many devices wrote it
        again = open_run(cfg.replace(loop=dataclasses.replace(cfg.loop, env_steps=1_280)), make_agent, make_envs, tmp,
                         progress=False, tensorboard=False, mesh=None)
        result["resumed_on_one_device"] = {"resumed": again.resumed, "env_steps": again.counters.env_steps,
                                           "replay_frame_spec": spec(again.state.replay.frame)}
        result["resumed_on_one_device"]["final_env_steps"] = again.run().env_steps
    return result


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
