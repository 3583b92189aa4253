"""Helpers shared by the tests (imported as ``helpers``; ``tests/conftest.py`` puts this
folder on ``sys.path``): the repository root, running and loading ``scripts/``, reading
a run directory, and small configs."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout under test
SCRIPTS = ROOT / "scripts"


# ---------------------------------------------------------------------------------------
# scripts/


def run_script(script: str, *args, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python scripts/<script> args...`` from the checkout, as a user runs it (text output captured)."""
    cmd = [sys.executable, str(SCRIPTS / script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def load_script(name: str):
    """``scripts/<name>.py`` imported as a module (registered in ``sys.modules``, where
    dataclasses and tyro look their module up)."""
    spec = importlib.util.spec_from_file_location(f"_script_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# ---------------------------------------------------------------------------------------
# Run directories (what agents.loop.train writes)


def read_metrics(run_dir) -> list[dict]:
    """The records of ``run_dir/metrics.jsonl``, in order."""
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def eval_steps(run_dir) -> list[int]:
    """Env steps of the evaluation records, in order."""
    return [r["env_steps"] for r in read_metrics(run_dir) if "eval/return_mean" in r]


def checkpoint_steps(run_dir) -> list[int]:
    """Steps of the complete checkpoints in ``run_dir`` (a write in progress has a temporary name)."""
    ckpt = os.path.join(run_dir, "checkpoints")
    if not os.path.isdir(ckpt):
        return []
    return sorted(int(n) for n in os.listdir(ckpt) if n.isdigit())


# ---------------------------------------------------------------------------------------
# Configs


def debug_config(**sections):
    """The tiny ``debug`` preset with fields replaced section by section, e.g.
    ``debug_config(loop={"env_steps": 96}, seed=3)``: a dict updates that section's
    fields, anything else replaces the top-level field."""
    from agents.efficientzero import get_preset

    cfg = get_preset("debug")
    changes = {
        name: dataclasses.replace(getattr(cfg, name), **value) if isinstance(value, dict) else value
        for name, value in sections.items()
    }
    return cfg.replace(**changes)


@contextlib.contextmanager
def count_host_reads(*modules):
    """Counts every read of a JAX array's value on the host while the block runs: through
    the array's own conversions (``float``, ``int``, ``bool``, ``item``, ``tolist``,
    ``jax.device_get``) and through ``np.asarray`` / ``np.array`` as ``modules`` call them.

    JAX's transfer guard cannot see these on a CPU, where device and host share memory, so
    they are counted where they happen. Yields a one-item list holding the count.
    """
    import jax
    import numpy as np
    from jax._src.array import ArrayImpl

    count = [0]
    saved = {}

    def counted_property(prop):
        return property(lambda self: (count.__setitem__(0, count[0] + 1), prop.fget(self))[1])

    def counted_method(method):
        def call(self, *args, **kwargs):
            count[0] += 1
            return method(self, *args, **kwargs)

        return call

    for name in ("_value", "item", "tolist", "__array__"):
        saved[name] = original = ArrayImpl.__dict__[name]
        setattr(ArrayImpl, name, counted_property(original) if isinstance(original, property) else counted_method(original))

    class CountingNumpy:
        def __getattr__(self, name):
            attr = getattr(np, name)
            if name not in ("asarray", "array"):
                return attr

            def convert(x, *args, **kwargs):
                count[0] += isinstance(x, jax.Array)
                return attr(x, *args, **kwargs)

            return convert

    originals = [(module, module.np) for module in modules]
    try:
        for module in modules:
            module.np = CountingNumpy()
        yield count
    finally:
        for name, original in saved.items():
            setattr(ArrayImpl, name, original)
        for module, original in originals:
            module.np = original
