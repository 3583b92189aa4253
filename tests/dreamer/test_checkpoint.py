"""Checkpoints: bitwise roundtrip, keep-last-K, kill -9 mid-write, config / structure /
corruption errors with fallback, a quiet failed restore, and the SIGINT / SIGTERM flag."""

from __future__ import annotations

import inspect
import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import ROOT

from dreamer.checkpoint import (
    Checkpointer,
    CheckpointError,
    ConfigMismatchError,
    CorruptCheckpointError,
    NoCheckpointError,
    StructureMismatchError,
)
from agents.loop import install_signal_handlers
from dreamer.config import Config, LoopConfig, to_dict


def make_state(step: int, big: bool = False) -> dict:
    """A deterministic training state; ``big`` makes its replay ~100 MB (the kill -9 test)."""
    rng = np.random.default_rng(step)
    n = 96 * 2**20 if big else 4096
    return {
        "params": {
            "w": jnp.asarray(rng.standard_normal((32, 16)), jnp.float32),
            "b": jnp.asarray(rng.standard_normal(16), jnp.bfloat16),
        },
        "key": jax.random.key(step),
        "updates": jnp.asarray(step, jnp.int32),
        "replay": {
            "obs": np.frombuffer(rng.bytes(n), np.uint8).reshape(-1, 64).copy(),
            "priority": rng.random(n // 64, dtype=np.float32),
        },
    }


# The child processes of the subprocess tests define make_state from the same source.
STATE_SRC = "import jax, jax.numpy as jnp, numpy as np\n\n" + inspect.getsource(make_state)


class AdamState(NamedTuple):
    count: jax.Array
    mu: dict
    nu: dict


def full_state(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    params = {
        "conv": {"kernel": jnp.asarray(rng.standard_normal((3, 3, 4, 8)), jnp.float32)},
        "head": jnp.asarray(rng.standard_normal(8), jnp.bfloat16),
    }
    return {
        "params": params,
        "target_params": jax.tree.map(lambda x: x * 2, params),
        "opt": AdamState(
            jnp.asarray(seed + 3, jnp.int32), jax.tree.map(jnp.zeros_like, params), jax.tree.map(jnp.ones_like, params)
        ),
        "replay": {
            "obs": rng.integers(0, 256, (50, 2, 8, 8), dtype=np.uint8),
            "priority": rng.random(50, dtype=np.float32),
            "done": rng.random(50) < 0.1,
            "empty": np.zeros((0, 3), np.float32),
        },
        "key": jax.random.key(seed),
        "legacy_key": jax.random.PRNGKey(seed + 1),
        "rbg_key": jax.random.key(seed, impl="rbg"),
        "keys": jax.random.split(jax.random.key(seed + 2), 4),
        "env_steps": jnp.asarray(12345 + seed, jnp.int32),
        "py_int": 7 + seed,
        "py_float": 0.1 + seed,
        "np_scalar": np.float32(2.5 + seed),
    }


def raw(x) -> np.ndarray:
    """The bytes of a leaf (key data for typed keys)."""
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return np.ascontiguousarray(np.asarray(x)).reshape(-1).view(np.uint8)


def assert_bitwise(a, b) -> None:
    la, ta = jax.tree_util.tree_flatten(a)
    lb, tb = jax.tree_util.tree_flatten(b)
    assert ta == tb
    for x, y in zip(la, lb, strict=True):
        assert type(x) is type(y) or (isinstance(x, jax.Array) and isinstance(y, jax.Array)), (type(x), type(y))
        assert np.shape(x) == np.shape(y)
        assert getattr(x, "dtype", None) == getattr(y, "dtype", None)
        assert raw(x).tobytes() == raw(y).tobytes()


META = {
    "config": {"seed": 0, "loop": {"env_steps": 100_000}},
    "git_commit": "abc123",
    "env_steps": 5000,
    "wall_time": 12.5,
}


def test_roundtrip_bitwise_concrete_and_abstract_targets(tmp_path):
    state = full_state(0)
    ck = Checkpointer(tmp_path, keep=3)
    path = ck.save(10, state, META)
    assert path == tmp_path / "checkpoints" / "10"
    assert ck.steps() == [10] and ck.latest() == 10 and Checkpointer(tmp_path).latest() == 10

    # concrete target with other values: only structure / dtypes / kinds are taken from it
    restored, meta = ck.restore(full_state(1))
    assert meta == META
    assert_bitwise(restored, state)
    assert isinstance(restored["opt"], AdamState)
    assert isinstance(restored["replay"]["obs"], np.ndarray) and restored["replay"]["obs"].flags.writeable
    assert isinstance(restored["params"]["head"], jax.Array) and restored["params"]["head"].dtype == jnp.bfloat16
    assert restored["key"].dtype == state["key"].dtype  # typed key, same impl
    assert restored["rbg_key"].dtype == state["rbg_key"].dtype
    assert type(restored["py_int"]) is int and type(restored["np_scalar"]) is np.float32
    # restored keys are usable keys
    assert np.array_equal(jax.random.normal(restored["key"], (3,)), jax.random.normal(state["key"], (3,)))

    # abstract target (what a resuming run has before it allocates anything)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype) if isinstance(x, jax.Array) else x, state)
    restored2, _ = Checkpointer(tmp_path).restore(abstract)
    assert_bitwise(restored2, state)


def test_relative_run_directory(tmp_path, monkeypatch):
    """scripts/train.py's default run directory is relative (runs/...); orbax needs absolute paths."""
    monkeypatch.chdir(tmp_path)
    state = full_state(0)
    ck = Checkpointer(os.path.join("runs", "rel"), keep=2)
    path = ck.save(3, state, META)
    assert path == tmp_path / "runs" / "rel" / "checkpoints" / "3"
    restored, _ = Checkpointer("runs/rel").restore(full_state(1))
    assert_bitwise(restored, state)


def test_keep_last_k_and_timeline(tmp_path, caplog):
    ck = Checkpointer(tmp_path, keep=2)
    for step in range(1, 6):
        ck.save(step * 100, make_state(step), {"step": step})
    assert ck.steps() == [400, 500]
    assert sorted(os.listdir(ck.directory)) == ["400", "500"]  # no tmp or trash left behind
    state, meta = ck.restore(make_state(0))
    assert meta == {"step": 5}
    assert_bitwise(state, make_state(5))

    # the same step again (the end of a run saves its last step once more) replaces it, quietly
    with caplog.at_level(logging.INFO):
        ck.save(500, make_state(6), {"step": 6})
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert ck.steps() == [400, 500]
    assert sorted(os.listdir(ck.directory)) == ["400", "500"]
    state, meta = ck.restore(make_state(0))
    assert meta == {"step": 6}
    assert_bitwise(state, make_state(6))

    # saving an older step (after resuming from an older checkpoint) drops the abandoned later ones
    with caplog.at_level(logging.WARNING, logger="dreamer.checkpoint"):
        ck.save(450, make_state(7), {"step": 7})
    assert ck.steps() == [400, 450]
    assert "abandoned timeline" in caplog.text

    with pytest.raises(ValueError):
        Checkpointer(tmp_path, keep=0)


CHILD_SRC = (
    STATE_SRC
    + """
import sys, threading, time
from pathlib import Path
from dreamer import checkpoint as C

run_dir, phase, marker = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
big = phase != "committed"
ck = C.Checkpointer(run_dir, keep=2)
ck.save(1, make_state(1, big), {"step": 1})

def watch(pattern):  # tells the parent as soon as orbax is writing into a matching tmp dir
    while not any(any(tmp.iterdir()) for tmp in ck.directory.glob(pattern)):
        time.sleep(0.001)
    marker.write_text("x")

if phase == "writing":
    threading.Thread(target=watch, args=("2.orbax-checkpoint-tmp*/state*",), daemon=True).start()
ck.save(2, make_state(2, big), {"step": 2})
if phase == "replacing":  # the same step again, killed while its new copy is written aside
    threading.Thread(target=watch, args=(".pending/2.orbax-checkpoint-tmp*/state*",), daemon=True).start()
    ck.save(2, make_state(3, big), {"step": 3})
marker.write_text("x")  # "committed": killed once the save has returned
time.sleep(120)
"""
)


def test_kill_9_during_write_keeps_previous_checkpoint(tmp_path):
    """SIGKILL at any point of a save: the previous checkpoint restores bit for bit, no
    half-written step is ever listed, and the next save clears the leftovers."""
    script = tmp_path / "child.py"
    script.write_text(CHILD_SRC)
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    # phase at which the child is killed -> (step a restore must give, state it holds)
    cases = {"writing": (1, 1), "replacing": (2, 2), "committed": (2, 2)}
    children = {}
    for phase in cases:
        run = tmp_path / phase
        run.mkdir()
        proc = subprocess.Popen(
            [sys.executable, str(script), str(run), phase, str(run / "marker")], env=env, stderr=subprocess.PIPE
        )
        children[phase] = (run, proc)
    pending = dict(children)
    deadline = time.monotonic() + 180
    while pending:
        assert time.monotonic() < deadline, f"children never reached {sorted(pending)}"
        for phase, (run, proc) in list(pending.items()):
            if (run / "marker").exists():
                proc.send_signal(signal.SIGKILL)
                proc.wait()
                del pending[phase]
            elif proc.poll() is not None:
                pytest.fail(f"child {phase} exited with {proc.returncode}: {proc.stderr.read().decode()[-2000:]}")
        time.sleep(0.002)

    for phase, (run, proc) in children.items():
        proc.stderr.close()
        assert proc.returncode == -signal.SIGKILL
        names = sorted(os.listdir(run / "checkpoints"))
        if phase == "writing":  # really killed inside orbax's write, before its rename
            assert names == ["1", "2.orbax-checkpoint-tmp"], names
        if phase == "replacing":  # killed while the new copy of step 2 was written aside
            assert names == [".pending", "1", "2"], names
            assert any(n.startswith("2.orbax-checkpoint-tmp") for n in os.listdir(run / "checkpoints" / ".pending"))
        expected_step, expected_state = cases[phase]
        big = phase != "committed"
        ck = Checkpointer(run, keep=2)
        assert ck.steps() == list(range(1, expected_step + 1)), (phase, names)
        state, meta = ck.restore(make_state(0, big))
        assert meta == {"step": expected_state}
        assert_bitwise(state, make_state(expected_state, big))

    # the next save clears the half-written directories up
    for phase, kept in (("writing", "1"), ("replacing", "2")):
        run = children[phase][0]
        Checkpointer(run, keep=2).save(3, make_state(3))
        assert sorted(os.listdir(run / "checkpoints")) == [kept, "3"]


def test_sigterm_lets_the_loop_checkpoint_and_exit(tmp_path):
    child = STATE_SRC + textwrap.dedent("""
        import sys, time
        from pathlib import Path
        from agents.loop import install_signal_handlers
        from dreamer import checkpoint as C
        run = Path(sys.argv[1])
        ck = C.Checkpointer(run)
        with install_signal_handlers() as stop:
            step = 0
            (run / "ready").write_text("x")
            while not stop:
                step += 1
                time.sleep(0.001)
            ck.save(step, make_state(1), {"step": step, "signal": stop.signum})
    """)
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    proc = subprocess.Popen([sys.executable, "-c", child, str(tmp_path)], env=env)
    deadline = time.monotonic() + 30
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    state, meta = Checkpointer(tmp_path).restore(make_state(0))
    assert meta["signal"] == signal.SIGTERM and meta["step"] >= 1
    assert_bitwise(state, make_state(1))


def test_config_mismatch(tmp_path):
    cfg = Config()
    ck = Checkpointer(tmp_path)
    ck.save(1, make_state(1), {"config": to_dict(cfg), "git_commit": "abc"})
    target = make_state(0)

    # same config, as a dataclass or as a dict (tuples vs JSON lists do not count)
    ck.restore(target, expected_config=cfg)
    ck.restore(target, expected_config=to_dict(cfg))

    longer = cfg.replace(loop=LoopConfig(env_steps=400_000))
    with pytest.raises(ConfigMismatchError, match=r"loop\.env_steps \(checkpoint 100000, expected 400000\)"):
        ck.restore(target, expected_config=longer)
    state, meta = ck.restore(target, expected_config=longer, allowed_differences=["loop.env_steps"])
    assert meta["git_commit"] == "abc"
    assert_bitwise(state, make_state(1))

    other = cfg.replace(seed=3, loop=LoopConfig(env_steps=400_000, replay_ratio=2.0))
    with pytest.raises(ConfigMismatchError) as info:
        ck.restore(target, expected_config=other, allowed_differences=["loop.env_steps"])
    message = str(info.value)
    assert "\n" not in message and "seed (checkpoint 0, expected 3)" in message and "loop.replay_ratio" in message
    assert "loop.env_steps" not in message
    # a whole section can be allowed
    ck.restore(target, expected_config=other, allowed_differences=["loop", "seed"])

    extra = dict(to_dict(cfg), new_field=1)
    with pytest.raises(ConfigMismatchError, match=r"new_field \(checkpoint '<missing>', expected 1\)"):
        ck.restore(target, expected_config=extra)
    assert isinstance(ConfigMismatchError("x"), ValueError)

    Checkpointer(tmp_path / "noconfig").save(1, make_state(1), {"git_commit": "abc"})
    with pytest.raises(ConfigMismatchError, match="has no 'config'"):
        Checkpointer(tmp_path / "noconfig").restore(target, expected_config=cfg)


def test_structure_mismatch(tmp_path):
    ck = Checkpointer(tmp_path)
    ck.save(1, make_state(1))
    target = make_state(0)

    bad_shape = dict(target, replay=dict(target["replay"], priority=np.zeros(3, np.float32)))
    with pytest.raises(StructureMismatchError, match=r"at leaf 4: \['replay'\]\['priority'\] float32\(64,\) in the "
                       r"checkpoint, \['replay'\]\['priority'\] float32\(3,\) in the target"):
        ck.restore(bad_shape)
    bad_dtype = dict(target, updates=jnp.asarray(0, jnp.float32))
    with pytest.raises(StructureMismatchError, match=r"\['updates'\] int32\(\) in the checkpoint, \['updates'\] float"):
        ck.restore(bad_dtype)
    bad_key = dict(target, key=jax.random.PRNGKey(0))
    with pytest.raises(StructureMismatchError, match=r"\['key'\] key<fry>\(\) in the checkpoint, \['key'\] uint32\(2"):
        ck.restore(bad_key)
    extra = dict(target, zzz=jnp.zeros(2))
    with pytest.raises(StructureMismatchError, match=r"\(6 leaves\) does not match the target \(7 leaves\) at leaf 6: "
                       r"nothing in the checkpoint, \['zzz'\] float32\(2,\) in the target"):
        ck.restore(extra)
    renamed = dict(target, params={"W": target["params"]["w"], "b": target["params"]["b"]})
    with pytest.raises(StructureMismatchError, match=r"at leaf 1: \['params'\]\['b'\] bfloat16\(16,\) in the "
                       r"checkpoint, \['params'\]\['W'\] float32\(32, 16\) in the target"):
        ck.restore(renamed)
    with pytest.raises(StructureMismatchError, match=r"leaf \['name'\] of type str is not an array"):
        ck.restore(dict(target, name="x"))


def _largest_file(path: Path) -> Path:
    files = [Path(root) / f for root, _, fs in os.walk(path) for f in fs]
    return max(files, key=lambda f: f.stat().st_size)


def _damage(file: Path, damage: str) -> None:
    if damage == "truncate":
        os.truncate(file, file.stat().st_size // 2)
    elif damage == "garbage":
        file.write_bytes(os.urandom(file.stat().st_size))
    elif damage == "zeroed_bytes":  # silent damage the file format itself may not notice
        with open(file, "r+b") as f:
            f.seek(file.stat().st_size // 2)
            f.write(b"\0" * 8)
    elif damage == "flipped_bytes":  # what tests/test_train_script.py does to a run's checkpoints
        data = bytearray(file.read_bytes())
        mid = len(data) // 2
        data[mid : mid + 64] = bytes(255 - x for x in data[mid : mid + 64])
        file.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["truncate", "garbage", "zeroed_bytes", "flipped_bytes", "meta"])
def test_corrupt_checkpoint_falls_back(tmp_path, caplog, damage):
    ck = Checkpointer(tmp_path, keep=3)
    for step in (1, 2, 3):
        ck.save(step, make_state(step), {"step": step})
    broken = ck.path(3)
    if damage == "meta":
        (broken / "meta" / "metadata").write_text('{"format": "dreamer-chec')
    else:
        _damage(_largest_file(broken / "state"), damage)

    with caplog.at_level(logging.WARNING, logger="dreamer.checkpoint"):
        state, meta = ck.restore(make_state(0))
    assert meta == {"step": 2}
    assert_bitwise(state, make_state(2))
    assert (
        "corrupt checkpoint" in caplog.text
        and str(broken) in caplog.text
        and "falling back to checkpoint 2" in caplog.text
    )


@pytest.mark.parametrize("damage", ["zeroed_bytes", "flipped_bytes"])
def test_orbax_alone_misses_damaged_bytes(tmp_path, damage):
    """Why each leaf keeps a CRC-32: orbax restores these damaged bytes without an error."""
    import orbax.checkpoint as ocp

    ck = Checkpointer(tmp_path)
    ck.save(1, make_state(1))
    _damage(_largest_file(ck.path(1) / "state"), damage)
    with ocp.CheckpointManager(ck.directory) as mngr:
        arrays = mngr.restore(1, args=ocp.args.Composite(state=ocp.args.StandardRestore())).state
    saved = [np.asarray(x) for x in jax.tree.leaves(make_state(1)) if x.dtype != make_state(1)["key"].dtype]
    restored = [np.asarray(x) for x in arrays.values()]
    assert not all(any(r.shape == s.shape and np.array_equal(r, s) for r in restored) for s in saved)
    with pytest.raises(CorruptCheckpointError, match="fails its checksum"):
        ck.restore(make_state(0))


FAILED_RESTORE_SRC = STATE_SRC + textwrap.dedent("""
    import os, sys
    from pathlib import Path
    from dreamer import checkpoint as C
    ck = C.Checkpointer(sys.argv[1])
    for step in (1, 2):
        ck.save(step, make_state(step))
        for root, _, files in os.walk(ck.path(step) / "state"):  # garble every array file
            for f in files:
                if Path(root).name == "d":
                    path = Path(root) / f
                    path.write_bytes(os.urandom(path.stat().st_size))
    try:
        ck.restore(make_state(0))
    except C.CorruptCheckpointError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
""")


def test_failed_restore_leaves_one_line_on_stderr(tmp_path):
    """Reads orbax leaves in flight when another one fails must not report on stderr
    (they printed tens of 'Event loop is closed' tracebacks, at random)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu")
    procs = [
        subprocess.Popen([sys.executable, "-c", FAILED_RESTORE_SRC, str(tmp_path / str(i))], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    for i, proc in enumerate(procs):
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 2, err[-3000:]
        lines = err.splitlines()
        assert len(lines) == 1, err[-3000:]
        assert lines[0].startswith(f"error: no checkpoint in {tmp_path / str(i)}") and "(2 corrupt)" in lines[0]
        assert out == ""


def test_abandoned_read_errors_are_recognised_without_a_traceback():
    """tensorstore sets a failed read's error on its future from C++: no traceback reaches
    orbax's frames, so the error's own text must mark it (CI once printed 12 such reports)."""
    from dreamer.checkpoint import _orbax_noise

    read_error = ValueError('DATA_LOSS: Error reading "0/.zarray" [tensorstore_spec=\'{"driver":"zarr"}\']')
    assert read_error.__traceback__ is None and _orbax_noise(read_error)
    assert _orbax_noise(RuntimeError("Event loop is closed"))
    assert not _orbax_noise(ValueError("DATA_LOSS: something else"))
    assert not _orbax_noise(None)


def test_all_corrupt_raises(tmp_path):
    ck = Checkpointer(tmp_path, keep=2)
    ck.save(1, make_state(1))
    ck.save(2, make_state(2))
    for step in (1, 2):
        (ck.path(step) / "meta" / "metadata").write_text("garbage")
    with pytest.raises(CorruptCheckpointError, match=r"no checkpoint in .* could be loaded \(2 corrupt\)"):
        ck.restore(make_state(0))


def test_no_checkpoint_and_incomplete_ones(tmp_path, caplog):
    with pytest.raises(NoCheckpointError, match="no complete checkpoint in"):
        Checkpointer(tmp_path).restore(make_state(0))
    ck = Checkpointer(tmp_path)
    ck.save(5, make_state(5))
    # what a killed write leaves is never listed
    (ck.directory / "9.orbax-checkpoint-tmp" / "state").mkdir(parents=True)
    assert ck.steps() == [5] and ck.latest() == 5
    assert_bitwise(ck.restore(make_state(0))[0], make_state(5))
    # a numbered directory that is no checkpoint (made by hand, an older format) is a corrupt
    # one: never restored, skipped for the next older checkpoint
    (ck.directory / "7" / "state").mkdir(parents=True)
    assert ck.steps() == [5, 7]
    with caplog.at_level(logging.WARNING, logger="dreamer.checkpoint"):
        assert_bitwise(ck.restore(make_state(0))[0], make_state(5))
    assert f"corrupt checkpoint {ck.path(7)}" in caplog.text and "falling back to checkpoint 5" in caplog.text


def test_bad_inputs_write_nothing(tmp_path):
    ck = Checkpointer(tmp_path)
    with pytest.raises(CheckpointError, match="not JSON-serializable"):
        ck.save(1, make_state(1), {"f": object()})
    with pytest.raises(CheckpointError, match=r"leaf \['name'\] of type str is not an array"):
        ck.save(1, {"name": "x", "a": jnp.zeros(2)})
    with pytest.raises(CheckpointError, match="non-negative integer"):
        ck.save(-1, make_state(1))
    assert not ck.directory.exists()
    # numpy values in meta are converted
    ck.save(1, make_state(1), {"env_steps": np.int64(5), "ret": np.float32(1.5)})
    assert ck.restore(make_state(0))[1] == {"env_steps": 5, "ret": 1.5}


def test_signal_handlers_set_flag_and_restore_previous(tmp_path):
    calls = []
    previous_int, previous_term = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)

    def recorder(signum, frame):
        calls.append(("previous", signum))

    signal.signal(signal.SIGINT, recorder)
    try:
        with install_signal_handlers() as stop:
            assert not stop and stop.signum is None
            signal.raise_signal(signal.SIGTERM)
            assert stop and stop.signum == signal.SIGTERM
            assert calls == []
            signal.raise_signal(signal.SIGINT)  # a second signal goes to the previous handler
            assert calls == [("previous", signal.SIGINT)]
            assert stop.signum == signal.SIGTERM
        assert signal.getsignal(signal.SIGINT) is recorder
        assert signal.getsignal(signal.SIGTERM) == previous_term

        signal.signal(signal.SIGINT, signal.default_int_handler)
        with install_signal_handlers() as stop:
            signal.raise_signal(signal.SIGINT)
            assert stop.signum == signal.SIGINT
            with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C still interrupts
                signal.raise_signal(signal.SIGINT)
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)


def test_a_field_added_since_the_save_counts_as_its_default():
    """A run saved before a config field existed resumes when the field keeps its default, and is
    refused when it is set to something else (dreamer.config.config_differences)."""
    from dreamer.config import LearnerConfig, PlannerConfig, config_differences

    old = to_dict(Config())
    del old["planner"]["model"]
    assert config_differences(old, to_dict(Config())) == []
    other = to_dict(Config(planner=PlannerConfig(model="simulator"), learner=LearnerConfig(reanalyze_fraction=0.0)))
    other["learner"]["reanalyze_fraction"] = old["learner"]["reanalyze_fraction"]
    assert config_differences(old, other) == [("planner.model", "learned", "simulator")]
