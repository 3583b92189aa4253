"""What the benchmark scripts share: the machine and commit a result comes from, timing of
jitted calls, a log of jax's compiles, writing the result (JSON and a markdown table), a
one-line-error argument parser, a ``scripts/train.py`` run in its own process, a uniformly
random policy, and the configs, params and replay contents the speed benchmarks measure with
(``--scale`` sizes, heads re-drawn at random, a pre-filled replay)."""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import re
import subprocess
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.tables import markdown_table
from dreamer.agent import ActOutput, Transition
from dreamer.config import Config, from_dict, to_dict
from dreamer.logger import git_commit  # noqa: F401  (the one commit helper, re-exported)

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
TRAIN_SCRIPT = ROOT / "scripts" / "train.py"
PACKAGES = ("jax", "jaxlib", "flax", "optax", "mctx", "numpy", "ale-py")

# The speed benchmarks donate the agent state and replay as training does; buffers that XLA cannot
# reuse (some, on a CPU) would warn on every call of the donating programs.
warnings.filterwarnings("ignore", message="Some donated buffers were not usable")


def _proc_field(path: str, key: str) -> str | None:
    """The value of the first ``key: value`` line of a /proc file; None off Linux."""
    try:
        with open(path) as f:
            return next((line.split(":", 1)[1].strip() for line in f if line.startswith(key)), None)
    except OSError:
        return None


def machine() -> dict:
    """Where a result is measured: OS, CPU model, clock and count, memory, Python, the versions of
    jax, jaxlib and the libraries the benchmarks exercise, jax's backend and devices, and
    the load average when called (the machines are often shared)."""
    devices = jax.devices()
    mem_kib = _proc_field("/proc/meminfo", "MemTotal")
    return {
        "platform": platform.platform(),
        "processor": _proc_field("/proc/cpuinfo", "model name") or platform.processor() or platform.machine(),
        # machines of one name differ (a VM's "AMD EPYC" has run one preset at 100 and at 190 env
        # steps/s): the clock and the widest vector unit tell some of them apart
        "cpu_mhz": _proc_field("/proc/cpuinfo", "cpu MHz"),
        "avx512": "avx512f" in (_proc_field("/proc/cpuinfo", "flags") or "").split(),
        "cpu_count": os.cpu_count(),
        "mem_total_gib": round(int(mem_kib.split()[0]) / 2**20, 1) if mem_kib else None,
        "python": platform.python_version(),
        **{p.replace("-", "_"): importlib.metadata.version(p) for p in PACKAGES},  # all install_requires
        "jax_backend": jax.default_backend(),
        "devices": [str(d) for d in devices],
        "device": str(devices[0]),
        "device_kind": getattr(devices[0], "device_kind", None),
        "load_average": list(os.getloadavg()),
    }


def device_tag() -> str:
    """``cpu``, or the accelerator's kind as a file-name fragment (``nvidia_h100_80gb_hbm3``)."""
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return "cpu"
    kind = re.sub(r"[^a-z0-9]+", "_", str(getattr(dev, "device_kind", dev.platform)).lower()).strip("_")
    return kind or dev.platform


def compile_timed(jitted, *args):
    """``jitted.lower(*args).compile()`` and the seconds it took (trace, lower, compile)."""
    t0 = time.perf_counter()
    compiled = jitted.lower(*args).compile()
    return compiled, time.perf_counter() - t0


def time_stats(times: Sequence[float]) -> dict:
    return {"reps": len(times), "median_s": float(np.median(times)), "min_s": float(np.min(times)),
            "max_s": float(np.max(times))}


def wall(call: Callable[[], Any]) -> float:
    """Seconds of one ``call()``, waited for with ``jax.block_until_ready`` on what it returns."""
    t0 = time.perf_counter()
    jax.block_until_ready(call())
    return time.perf_counter() - t0


def time_calls(call: Callable[[], Any], *, min_reps: int = 3, max_reps: int = 10, target_s: float = 2.0,
               warmup: bool = False) -> dict:
    """Wall times of ``call()``, each waited for with ``jax.block_until_ready`` on what it
    returns: at least ``min_reps`` calls, then more until ``max_reps`` calls or ``target_s``
    seconds in all. With ``warmup`` one call comes first, timed apart as ``first_call_s``
    (for a jitted function not yet compiled, that is where the compile goes; use
    :func:`compile_timed` to measure the compile alone). Returns :func:`time_stats`."""
    first = {"first_call_s": wall(call)} if warmup else {}
    times: list[float] = []
    while len(times) < min_reps or (len(times) < max_reps and sum(times) < target_s):
        times.append(wall(call))
    return {**first, **time_stats(times)}


class CompileLog:
    """Counts traces and compiles per function name from jax's monitoring events (they carry
    ``fun_name``, e.g. ``act`` and ``train`` for ``jit(act)`` and ``jit(train)``)."""

    EVENTS = {
        "/jax/core/compile/jaxpr_trace_duration": "trace",
        "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
        "/jax/core/compile/backend_compile_duration": "backend_compile",
    }

    def __init__(self):
        self.events: list[tuple[float, str, str, float]] = []  # (perf_counter, kind, fun_name, seconds)
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event: str, duration: float, **kwargs) -> None:
        kind = self.EVENTS.get(event)
        if kind is not None:
            name = str(kwargs.get("fun_name", "?"))
            name = name[4:-1] if name.startswith("jit(") and name.endswith(")") else name
            self.events.append((time.perf_counter(), kind, name, float(duration)))

    def mark(self) -> int:
        return len(self.events)

    def summary(self, names: Sequence[str], since: int = 0) -> dict:
        out = {n: {"traces": 0, "backend_compiles": 0, "trace_s": 0.0, "lower_s": 0.0, "backend_compile_s": 0.0}
               for n in names}
        for _, kind, name, dur in self.events[since:]:
            if name in out:
                out[name][f"{kind}_s"] += dur
                if kind in ("trace", "backend_compile"):
                    out[name]["traces" if kind == "trace" else "backend_compiles"] += 1
        return out

    def between(self, t0: float, t1: float) -> list[str]:
        """Names of everything compiled (any function, eager ops too) between two instants."""
        return [name for t, kind, name, _ in self.events if kind == "backend_compile" and t0 <= t <= t1]


def write_result(path: str | os.PathLike, record: dict, table: tuple[Sequence[str], Sequence] | None = None) -> Path:
    """Prints ``table`` (header, rows) as markdown, then writes ``record`` as JSON to ``path``
    with ``commit``, ``date`` (UTC) and ``machine`` filled in where the record lacks them and
    the load average at the end added to the machine; values JSON does not know are written
    as ``str``. Directories are made as needed; prints and returns the path."""
    if table is not None:
        print("\n" + markdown_table(*table) + "\n")
    record = dict(record)
    record.setdefault("commit", git_commit())
    record.setdefault("date", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
    record["machine"] = {**(record.get("machine") or machine()), "load_average_at_end": list(os.getloadavg())}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1, default=str) + "\n")
    print(f"wrote {path}")
    return path


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line on stderr (no usage block) and exits 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n")

    def writable(self, path: str | os.PathLike) -> Path:
        """``path`` with its directory made and probed for writing, or a usage error."""
        path = Path(path)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=path.parent).close()
        except OSError as e:
            self.error(f"cannot write {path}: {e.strerror or e}")
        return path


def run_train(cmd: Sequence[str], run_dir: str | os.PathLike) -> tuple[int, float, str]:
    """Runs ``cmd`` (a ``scripts/train.py`` command line) in a fresh process from the
    repository root, its output captured and appended to ``<run_dir>/train_output.log``.
    Returns ``(exit code, seconds from launch to exit, train.py's last stderr line)``.

    On Ctrl-C (the child gets the SIGINT too, and checkpoints before it stops) this waits
    up to a minute for the child to exit, logs what it printed and raises
    ``KeyboardInterrupt`` again."""
    launch = time.time()
    proc = subprocess.Popen(list(cmd), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        out, err = proc.communicate()
        wall = time.time() - launch
    except KeyboardInterrupt:
        try:
            out, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, err = proc.communicate()
        raise
    finally:
        os.makedirs(run_dir, exist_ok=True)
        with open(os.path.join(run_dir, "train_output.log"), "a") as f:
            f.write(out + err)
    lines = [line for line in err.strip().splitlines() if line.strip()]
    return proc.returncode, wall, lines[-1] if lines else f"train.py exited with {proc.returncode}"


def uniform_random_policy(num_actions: int) -> Callable:
    """A jitted ``policy(params, rng, obs) -> ActOutput`` that plays uniformly random actions
    (uniform policy, zero values), for :func:`agents.loop.evaluate` (``params`` is ignored)."""

    @jax.jit
    def policy(params, rng, obs):
        zeros = jnp.zeros(obs.shape[0])
        action = jax.random.randint(rng, (obs.shape[0],), 0, num_actions)
        return ActOutput(action, jnp.full((obs.shape[0], num_actions), 1.0 / num_actions), zeros, zeros)

    return policy


def apply_overrides(cfg: Config, overrides: dict[str, Any]) -> Config:
    """``{"network.channels": 16, ...}`` -> a new config (validated on construction)."""
    data = to_dict(cfg)
    for key, value in overrides.items():
        section, name = key.split(".")
        data[section][name] = value
    return from_dict(data)


def scale_overrides(cfg: Config) -> dict[str, Any]:
    """What ``--scale`` changes (throughput.py, profile_update.py): sizes only, as the
    atari-debug preset does, never the algorithm. Search kind, supports, unroll and TD
    steps, replay ratio, updates per call, reanalyse fraction and ``min_size`` stay the
    preset's."""
    return {
        "env.frame_size": 64,
        "env.grayscale": True,
        "network.channels": 16,
        "network.reduced_channels": 4,
        "network.head_hidden": (16,),
        "network.lstm_hidden": 32,
        "network.projection_hidden": 64,
        "network.projection_out": 64,
        "network.predictor_hidden": 32,
        "planner.num_simulations": max(4, cfg.planner.num_simulations // 4),
        "replay.capacity": 8_000,
        "replay.batch_size": 16,
    }


def randomize_heads(params, key: jnp.ndarray, scale: float = 1.0):
    """Re-draws every all-zero weight matrix (the zero-initialised last layers of the value,
    reward and policy heads) as ``scale * N(0, 1 / fan_in)``: an untrained network whose
    outputs are noise rather than exactly zero (fresh heads make every value 0 and every
    search tree balanced)."""
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for k, leaf in zip(keys, leaves):
        if leaf.ndim >= 2 and not np.any(np.asarray(leaf)):
            leaf = scale * jax.random.normal(k, leaf.shape, leaf.dtype) / np.sqrt(leaf.shape[-2])
        out.append(leaf)
    return jax.tree_util.tree_unflatten(treedef, out)


def fill_replay(observe: Callable, state, spec, num_envs: int, vector_steps: int, envs=None, seed: int = 0,
                template: ActOutput | None = None):
    """Writes ``vector_steps`` vector steps into an agent's replay with its jitted
    ``observe(state, Transition) -> state`` (donated: the returned state is kept). Frames,
    rewards and ends are ``envs``' own, stepped with random actions (each step timed with
    the ``observation`` the loop reads after it), or random without ``envs``; search
    policies and values are random. Arguments have the loop's kinds (numpy env data, device
    act outputs), so ``observe`` compiles once for both. Returns ``(state, {"env_s": [...],
    "observe_s": [...]})``, wall times per vector step. ``template``: an output of the agent's
    own ``act`` (with its diagnostics), whose structure the stored act outputs keep."""
    rng = np.random.default_rng(seed)
    n, a = num_envs, spec.num_actions

    def random_frames():
        if np.issubdtype(np.dtype(spec.frame_dtype), np.integer):
            return rng.integers(0, 256, (n, *spec.frame_shape), dtype=np.uint8).astype(spec.frame_dtype)
        return rng.normal(size=(n, *spec.frame_shape)).astype(spec.frame_dtype)

    frames = envs.reset(seed) if envs is not None else random_frames()
    first = np.ones(n, bool)
    times: dict[str, list[float]] = {"env_s": [], "observe_s": []}
    for _ in range(vector_steps):
        action = rng.integers(0, a, n).astype(np.int32)
        logits = rng.normal(size=(n, a))
        policy = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
        value = rng.normal(size=n)
        acted = (template or ActOutput(None, None, None, None))._replace(
            action=jnp.asarray(action), policy=jnp.asarray(policy, jnp.float32),
            root_value=jnp.asarray(value, jnp.float32), predicted_value=jnp.asarray(value, jnp.float32))
        if envs is not None:
            t0 = time.perf_counter()
            next_frames, reward, terminated, truncated, _ = envs.step(action)
            envs.observation()
            times["env_s"].append(time.perf_counter() - t0)
        else:
            next_frames = random_frames()
            reward = rng.choice(np.array([-1.0, 0.0, 1.0], np.float32), n, p=[0.05, 0.85, 0.10])
            terminated, truncated = rng.random(n) < 0.005, np.zeros(n, bool)
        t0 = time.perf_counter()
        state = jax.block_until_ready(observe(state, Transition(frames, action, reward, terminated, truncated, first, acted)))
        times["observe_s"].append(time.perf_counter() - t0)
        first, frames = terminated | truncated, next_frames
    return state, times
