#!/usr/bin/env python3
"""Updates per second against device count, data-parallel (dreamer/sharding.py).

    python benchmarks/scaling.py                      # virtual CPU devices 1 2 4 8, the minatar preset on Breakout
    python benchmarks/scaling.py --devices 1 2 --updates 40 --batch 256
    python benchmarks/scaling.py --real               # the machine's own devices (on a GPU host: 1..all GPUs)

Each device count runs in a process of its own (a process's device count is fixed when JAX
starts): with ``--xla_force_host_platform_device_count=D`` on a CPU (the default), or the
first ``D`` real devices with ``--real``. The process builds the agent of the preset, fills
its replay by acting (one device), places the state on a ``D``-device mesh (replay along the
envs, params replicated) and times ``--updates`` updates of the same global batch, after one
call that compiles.

Virtual CPU devices share the host's cores: on a 2-core machine D devices do not add compute,
so these numbers check the mechanics (the program partitions, runs, and what that costs), not
a speed-up. A speed-up needs real devices (``--real`` on a multi-GPU host); a lent GPU here
is one device. Writes ``benchmarks/results/scaling_<tag>.json`` with the machine and commit.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from benchmarks.harness import RESULTS, ROOT, Parser, device_tag, machine, write_result


def worker(devices: int, preset: str, env: str, updates: int, batch: int, real: bool) -> dict:
    """Runs in the child process: fill, place, time; returns the row."""
    import dataclasses
    import functools

    import jax
    import jax.numpy as jnp

    from agents.efficientzero import make_agent
    from agents.efficientzero.presets import get_preset
    from agents.envs import make as make_envs
    from agents.loop import FusedEnv, fused_chunk
    from dreamer import sharding

    cfg = get_preset(preset)
    cfg = cfg.replace(env=dataclasses.replace(cfg.env, id=env),
                      replay=dataclasses.replace(cfg.replay, batch_size=batch, min_size=max(batch, cfg.replay.min_size)),
                      learner=dataclasses.replace(cfg.learner, updates_per_call=1))
    fenv = make_envs(cfg.env, "train", 0).functional
    agent = make_agent(cfg, fenv.spec)
    state = jax.jit(agent.init)(jax.random.PRNGKey(0))
    env_state, frame = jax.jit(fenv.init)(jax.random.PRNGKey(1))
    carry = FusedEnv(env_state, frame, jnp.ones(fenv.num_envs, bool), jax.random.PRNGKey(2), jnp.zeros(2),
                     {k: jnp.zeros(()) for k in ("search/root_q_spread", "search/policy_entropy")})
    steps = -(-cfg.replay.min_size // fenv.num_envs)
    state, _, _ = jax.jit(functools.partial(fused_chunk, agent, fenv, steps, 0))(state, carry, 1.0, 0.0)
    mesh = sharding.make_mesh(devices)
    shardings = agent.shardings(jax.eval_shape(lambda: state), mesh)
    state = sharding.place(state, shardings)
    train = jax.jit(agent.train, donate_argnums=0, out_shardings=(shardings, sharding.replicated(mesh)))
    with jax.set_mesh(mesh):
        t0 = time.perf_counter()
        state, metrics = train(state)
        jax.block_until_ready(state)
        compile_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        for _ in range(updates):
            state, metrics = train(state)
        jax.block_until_ready(state)
        elapsed = time.perf_counter() - t0
    return {"devices": devices, "device_kind": jax.devices()[0].device_kind, "virtual": not real,
            "global_batch": batch, "updates": updates, "seconds": elapsed, "updates_per_s": updates / elapsed,
            "samples_per_s": updates * batch / elapsed, "first_call_s": compile_s,
            "replay_devices": len(state.replay.frame.sharding.device_set), "loss_total": float(metrics["loss/total"])}


def main(argv=None) -> int:
    p = Parser(prog="scaling.py", description=__doc__.split("\n")[0])
    p.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    p.add_argument("--preset", default="minatar")
    p.add_argument("--env", default="MinAtar/Breakout")
    p.add_argument("--updates", type=int, default=30, help="timed updates per device count (default 30)")
    p.add_argument("--batch", type=int, default=256, help="global batch, split over the devices (default 256)")
    p.add_argument("--real", action="store_true", help="the machine's own devices instead of virtual CPU devices")
    p.add_argument("--out", default=None)
    p.add_argument("--worker", type=int, default=None, help=argparse_hidden())
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.preset, args.env, args.updates, args.batch, args.real)))
        return 0
    if min(args.devices) < 1 or any(args.batch % d for d in args.devices):
        p.error(f"--devices must be >= 1 and divide --batch ({args.batch}), got {args.devices}")
    rows, results = [], []
    for d in args.devices:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        if not args.real:
            env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={d}".strip()
            env["JAX_PLATFORMS"] = "cpu"
        cmd = [sys.executable, __file__, "--worker", str(d), "--preset", args.preset, "--env", args.env,
               "--updates", str(args.updates), "--batch", str(args.batch)] + (["--real"] if args.real else [])
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if out.returncode != 0:
            p.exit(1, f"scaling.py: {d} devices failed: {out.stderr.strip().splitlines()[-1]}\n")
        row = json.loads(out.stdout.strip().splitlines()[-1])
        results.append(row)
        base = results[0]["updates_per_s"]
        rows.append([d, f"{row['updates_per_s']:.1f}", f"{row['samples_per_s']:.0f}", f"{row['updates_per_s'] / base:.2f}x",
                     f"{row['first_call_s']:.0f}", row["replay_devices"]])
        print(f"{d} devices: {row['updates_per_s']:.1f} updates/s", flush=True)
    tag = "virtual_cpu" if not args.real else device_tag()
    out = args.out or RESULTS / f"scaling_{tag}.json"
    note = ("virtual CPU devices sharing this host's cores: a check of the mechanics (the program partitions and "
            "runs on D devices), not a speed-up" if not args.real else "real devices")
    write_result(out, {"benchmark": "scaling", "preset": args.preset, "env": args.env, "note": note,
                       "rows": results, "machine": machine()},
                 (["devices", "updates/s", "samples/s", "vs 1 device", "first call s", "replay on devices"], rows))
    return 0


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    raise SystemExit(main())
