"""Data parallelism (dreamer/sharding.py, the loop on a mesh): on 4 virtual CPU devices the
updates match one device's, the replay and the env state lie along the devices, the whole loop
trains, checkpoints and resumes on another device count; bad device counts are refused.

The 4-device part runs in a process of its own (tests/agents/sharding_worker.py), as a
process's device count is fixed when JAX starts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from helpers import ROOT, load_script

UPDATES = 50


def on_four_devices(*parts: str) -> dict:
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, os.path.join(os.path.dirname(__file__), "sharding_worker.py"), *parts],
                         capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def four_devices():
    """The sweep variant (the default suite)."""
    return on_four_devices("sweep")


@pytest.fixture(scope="module")
def four_devices_more():
    """The other reanalysis variants and the whole loop (slow: about 3 minutes on 2 cores)."""
    return on_four_devices("none", "batch", "loop")


def relative_differences(result: dict, name: str) -> np.ndarray:
    one = np.array([u[name] for u in result["one_device"]])
    four = np.array([u[name] for u in result["four_devices"]])
    assert one.shape == four.shape == (UPDATES,)
    return np.abs(one - four) / np.maximum(np.abs(one), 1.0)


@pytest.mark.parametrize("reanalyze", ["sweep", pytest.param("none", marks=pytest.mark.slow),
                                       pytest.param("batch", marks=pytest.mark.slow)])
def test_four_devices_give_one_devices_losses(request, reanalyze):
    """Same global batch, same keys: every loss term of 50 updates agrees with one device's to
    float rounding (1e-6 here), with the reanalysis search on the batch or in sweeps too. The
    partitioned program sums in another order, so its priorities differ in the last bits and a
    prioritised draw can now and then flip (and the batch's importance weights with it): the
    replay draws here ignore priorities (alpha 0), which leaves nothing discrete to flip."""
    fixture = "four_devices" if reanalyze == "sweep" else "four_devices_more"
    result = request.getfixturevalue(fixture)[reanalyze]
    for name in ("loss/total", "loss/value", "loss/policy", "loss/reward", "loss/consistency"):
        d = relative_differences(result, name)
        assert d.max() < 1e-4, (name, d.max())
        assert np.median(d) < 1e-5, (name, np.median(d))


def test_replay_lies_along_the_devices_and_params_are_replicated(four_devices):
    result = four_devices["sweep"]
    assert result["replay_frame_spec"] == ["data"] and result["replay_frame_devices"] == 4
    assert result["replay_frame_shard_shape"][0] * 4 == result["replay_frame_shape"][0] == 8
    assert result["params_specs"] == ["[]"]  # every parameter replicated


@pytest.mark.slow
def test_whole_loop_on_four_devices_then_resumed_on_one(four_devices_more):
    loop = four_devices_more["loop"]
    assert loop["env_steps"] == 1024 and loop["updates"] > 0 and loop["evaluations"] == 1
    assert loop["replay_frame_spec"] == ["data"] and loop["env_state_frame_spec"] == ["data"]
    assert loop["checkpoints"] == [1024]
    again = four_devices_more["resumed_on_one_device"]
    assert again["resumed"] and again["env_steps"] == 1024 and again["replay_frame_spec"] == ["single"]
    assert again["final_env_steps"] == 1280


def test_device_counts_that_do_not_split_are_refused():
    from dreamer.config import Config
    from agents.loop import check_mesh

    class Mesh:  # check_mesh reads only the device count
        size = 3

    with pytest.raises(ValueError, match=r"env.num_envs \(8\) does not split over 3 devices"):
        check_mesh(Mesh(), [Config()])
    with pytest.raises(ValueError, match="2 runs side by side do not split over 3 devices"):
        check_mesh(Mesh(), [Config(seed=0), Config(seed=1)])
    assert check_mesh(None, [Config()]) is None


def test_train_script_refuses_device_counts_it_cannot_use(capsys, tmp_path):
    train = load_script("train")

    def refusal(argv):
        with pytest.raises(SystemExit) as exit_info:
            train.main([*argv, "--run-dir", str(tmp_path / "run")])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and len(err.splitlines()) == 1, err
        return err.strip()

    assert refusal(["--devices", "2"]) == "train.py: error: --devices: asked for 2 devices; 1 are available (cpu)"
    assert refusal(["--devices", "0"]) == "train.py: error: --devices must be >= 1, got 0"
    assert not (tmp_path / "run").exists()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_processes_train_together_checkpoint_and_resume_in_one(tmp_path):
    """Two train.py processes joined by jax.distributed through a localhost coordinator (one CPU
    device each: the mesh spans the processes, the replay is split between them) train a few
    updates and checkpoint collectively; one process then resumes the run alone."""
    run_dir = tmp_path / "run"
    small = ["--preset", "minatar", "--env", "MinAtar/Breakout", "--replay.min_size", "256", "--replay.batch_size", "32",
             "--replay.capacity", "4096", "--loop.eval_every", "512", "--env.eval_episodes", "4",
             "--env.num_eval_envs", "4", "--env.num_envs", "8", "--network.latent_dim", "32", "--network.hidden", "64",
             "--learner.updates_per_call", "4", "--no-plot", "--no-tensorboard", "--no-progress",
             "--run-dir", str(run_dir)]
    script = os.path.join(ROOT, "scripts", "train.py")
    env = {**os.environ, "DREAMER_COORDINATOR": f"localhost:{free_port()}", "DREAMER_NUM_PROCESSES": "2"}
    procs = [subprocess.Popen([sys.executable, script, *small, "--steps", "512"], cwd=ROOT, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**env, "DREAMER_PROCESS_ID": str(i)})
             for i in (0, 1)]
    outs = [p.communicate(timeout=900) for p in procs]
    for p, (_, err) in zip(procs, outs):
        assert p.returncode == 0, err[-3000:]
    assert all("done in" in err and "512 env steps" in err for _, err in outs)
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["512"]
    metrics = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert metrics and all(m["env_steps"] <= 512 for m in metrics)  # written once, by process 0
    assert len([m for m in metrics if "eval/return_mean" in m]) == 1
    resumed = subprocess.run([sys.executable, script, *small, "--steps", "768"], cwd=ROOT, text=True,
                             capture_output=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from 512 env steps" in resumed.stderr and "768 env steps" in resumed.stderr
