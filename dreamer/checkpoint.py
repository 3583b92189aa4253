"""Checkpoints: everything a run needs to resume, saved atomically, restored bit for bit.

``<run_dir>/checkpoints/<step>/`` is a step of an orbax ``CheckpointManager``: item ``state``
holds the state pytree's array leaves (tensorstore + OCDBT: a large replay streams to disk),
item ``meta`` the JSON ``meta`` (config, counters, commit) and each leaf's path, shape, dtype
and CRC-32. Orbax writes a step aside and renames it into place (a kill -9 leaves the earlier
steps intact), lists finalized steps only, clears a killed save's leftovers and keeps ``keep``.

Done here, as orbax does not: restoring into ``target_like``'s structure, shapes and dtypes
(a mismatch is refused where orbax would cast); the config check; a CRC-32 per leaf (orbax
restores flipped bytes without a word, tests/dreamer/test_checkpoint.py shows it); falling
back from a checkpoint that fails to load to the next older one; one timeline per run
directory (saving step ``s`` drops later steps; re-saving a step swaps a new copy in).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import sys
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import jax
import numpy as np
import orbax.checkpoint as ocp

from dreamer.config import config_differences

log = logging.getLogger(__name__)
FORMAT = "dreamer-checkpoint/2"
_DELETED, _PENDING = ".deleted", ".pending"  # old steps on their way out; a re-saved step's new copy


class CheckpointError(ValueError):
    """A checkpoint could not be saved or restored; the message is one line. Subclasses: no
    complete checkpoint, another config wrote it, its leaves do not match the target (paths,
    shapes or dtypes), its files are unreadable or fail their checksums."""


NoCheckpointError = type("NoCheckpointError", (CheckpointError,), {})
ConfigMismatchError = type("ConfigMismatchError", (CheckpointError,), {})
StructureMismatchError = type("StructureMismatchError", (CheckpointError,), {})
CorruptCheckpointError = type("CorruptCheckpointError", (CheckpointError,), {})


def _is_key(x: Any) -> bool:
    return jax.dtypes.issubdtype(getattr(x, "dtype", None), jax.dtypes.prng_key)


def _spec(x: Any, path: str) -> tuple[list, str]:
    x = np.asarray(x) if isinstance(x, bool | int | float) else x
    if getattr(x, "dtype", None) is None or getattr(x, "shape", None) is None:
        raise StructureMismatchError(f"leaf {path} of type {type(x).__name__} is not an array (put it in meta)")
    return list(x.shape), str(x.dtype if _is_key(x) else np.dtype(x.dtype))


def _spans_hosts(x: Any) -> bool:
    """A jax.Array split over several processes' devices: no process holds all of it."""
    return isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated


def _host_copy(x: Any) -> np.ndarray:
    """``x`` as a host array (a multi-host array replicated on every process: this process's copy)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        x = x.addressable_data(0)
    return np.asarray(x)


def _crc32(data: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(data).reshape(-1).view(np.uint8))


def _flatten(tree: Any) -> tuple[list[str], list[Any], Any]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) or "<root>" for p, _ in leaves], [x for _, x in leaves], treedef


def _to_target_kind(data: np.ndarray, target: Any, key_impl: str | None) -> Any:
    if isinstance(target, np.generic | bool | int | float):
        return type(target)(data[()])
    if isinstance(target, np.ndarray):
        return data if data.flags.writeable else data.copy()
    sharding = getattr(target, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    if not sharding.is_fully_addressable:  # a multi-host array: each process puts the slices its devices hold
        out = jax.make_array_from_callback(data.shape, sharding, lambda index: data[index])
        return jax.random.wrap_key_data(out, impl=key_impl) if key_impl else out
    return jax.device_put(jax.random.wrap_key_data(data, impl=key_impl) if key_impl else data, sharding)


def _jsonable(x: Any) -> Any:
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    return x.item() if isinstance(x, np.generic) else json.JSONEncoder().default(x)  # the latter raises


def _orbax_noise(exc: BaseException | None) -> bool:
    """Whether ``exc`` comes from an abandoned orbax read: raised in orbax's code, the closed loop
    itself, or a tensorstore read error (set on its future from C++, so it carries no traceback)."""
    tb = getattr(exc, "__traceback__", None)
    while tb is not None and f"{os.sep}orbax{os.sep}" not in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    return (
        tb is not None
        or (isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed")
        or (isinstance(exc, ValueError) and "tensorstore_spec=" in str(exc))
    )


@contextlib.contextmanager
def _abandoned_reads_silenced() -> Iterator[None]:
    """orbax gathers a restore's reads in one event loop and closes it when one read fails; the
    reads still in flight then print "Event loop is closed", "exception was never retrieved" or
    "never awaited" reports, tens to hundreds, right away or at exit. Closing the manager cannot
    stop them. The checkpoint is reported corrupt anyway: those reports (only they) are dropped."""
    previous, asyncio_log = sys.unraisablehook, logging.getLogger("asyncio")
    sys.unraisablehook = lambda u: None if _orbax_noise(u.exc_value) else previous(u)
    asyncio_log.addFilter(drop := lambda r: not (r.exc_info and _orbax_noise(r.exc_info[1])))
    try:
        yield
    except Exception:
        warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning)
        raise
    sys.unraisablehook = previous
    asyncio_log.removeFilter(drop)


def _one_line(e: Exception) -> str:
    return f"{type(e).__name__}: " + " ".join(str(e).split()).split(" [tensorstore_spec=")[0][:300]


class Checkpointer:
    """Saves and restores ``(state, meta)`` under ``<run_dir>/checkpoints/<step>/``, keeping the newest ``keep``."""

    def __init__(self, run_dir: str | os.PathLike, *, keep: int = 2):
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"Checkpointer keep must be an integer >= 1, got {keep!r}")
        self.directory = Path(run_dir).absolute() / "checkpoints"  # orbax refuses relative paths
        self.keep = keep

    def _manager(self, directory: Path | None = None, **options: Any):
        options = dict(max_to_keep=self.keep, todelete_subdir=_DELETED, enable_async_checkpointing=False,
                       save_root_metadata=False, lightweight_initialize=True, **options)
        return ocp.CheckpointManager(directory or self.directory, options=ocp.CheckpointManagerOptions(**options))

    def steps(self) -> list[int]:
        """Steps of the finalized checkpoints, ascending."""
        with self._manager(create=False) as mngr:
            return sorted(mngr.all_steps())

    def latest(self) -> int | None:
        return max(self.steps(), default=None)

    def path(self, step: int) -> Path:
        return self.directory / str(int(step))

    def save(self, step: int, state: Any, meta: Mapping[str, Any] | None = None) -> Path:
        """Write checkpoint ``step`` of ``state`` (array pytree) and ``meta`` (comes back as JSON gives it)."""
        if not isinstance(step, int | np.integer) or isinstance(step, bool) or step < 0:
            raise CheckpointError(f"checkpoint step must be a non-negative integer, got {step!r}")
        try:
            meta = json.loads(json.dumps(dict(meta or {}), default=_jsonable))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint meta is not JSON-serializable: {e}") from None
        step, arrays, leaves = int(step), {"step": np.asarray(step, np.int64)}, []  # orbax refuses empty trees
        for i, (path, x) in enumerate(zip(*_flatten(state)[:2])):
            shape, dtype = _spec(x, path)
            impl = str(jax.random.key_impl(x)) if _is_key(x) else None
            if _spans_hosts(x):  # written collectively: each process writes the shards its devices hold
                data = jax.random.key_data(x) if impl else x
                if data.size:
                    arrays[str(i)] = data
                leaves.append(dict(path=path, shape=shape, dtype=dtype, stored=[list(data.shape), str(np.dtype(data.dtype))],
                                   crc32=None, key_impl=impl))  # no process sees the whole leaf to sum it
                continue
            data = _host_copy(jax.random.key_data(x) if impl else x)
            if data.size:  # orbax refuses zero-size arrays; the record says all about them
                arrays[str(i)] = data
            leaves.append(dict(path=path, shape=shape, dtype=dtype, stored=[list(data.shape), str(data.dtype)],
                               crc32=_crc32(data), key_impl=impl))
        record = {"format": FORMAT, "step": step, "leaves": leaves, "meta": meta}
        args = ocp.args.Composite(state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(record))
        with self._manager(cleanup_tmp_directories=True) as mngr:
            self._clear_leftovers()
            if later := [s for s in mngr.all_steps() if s > step]:
                log.warning("saving checkpoint %d: removing checkpoints %s of an abandoned timeline", step, later)
            for s in later:
                mngr.delete(s)
            if step not in mngr.all_steps():
                mngr.save(step, args=args)
            elif jax.process_count() > 1:  # the same step again: the processes would race to swap copies
                log.info("checkpoint %d exists; a multi-host run does not write it again", step)
            else:  # the old copy stays until the new one is complete, then two renames swap them
                with self._manager(self.directory / _PENDING) as pending:
                    pending.save(step, args=args)
                os.replace(self.path(step), self.directory / _PENDING / "old")
                os.replace(self.directory / _PENDING / str(step), self.path(step))
        self._clear_leftovers()
        return self.path(step)

    def _clear_leftovers(self) -> None:
        for leftover in (_DELETED, _PENDING):
            shutil.rmtree(self.directory / leftover, ignore_errors=True)

    def restore(self, target_like: Any, *, expected_config: Any = None, allowed_differences: Sequence[str] = ()):
        """``(state, meta)`` of the newest checkpoint that loads, shaped like ``target_like``.

        The saved ``meta["config"]`` must equal ``expected_config`` (when given) but at the dotted
        paths of ``allowed_differences`` and below. A corrupt checkpoint is skipped for the next
        older one (with a warning once one loads); config and structure mismatches raise at once.
        """
        if expected_config is not None:
            expected_config = json.loads(json.dumps(expected_config, default=_jsonable))
        failures, allowed = [], tuple(allowed_differences)
        with self._manager(create=False) as mngr:
            for step in sorted(mngr.all_steps(), reverse=True):
                try:
                    state, meta = self._restore_one(mngr, step, target_like, expected_config, allowed)
                except CorruptCheckpointError as e:
                    failures.append(str(e))
                    continue
                if failures:
                    log.warning("%s; falling back to checkpoint %d", " | ".join(failures), step)
                return state, meta
        if not failures:
            raise NoCheckpointError(f"no complete checkpoint in {self.directory}")
        raise CorruptCheckpointError(f"no checkpoint in {self.directory} could be loaded ({len(failures)} corrupt): "
                                     + " | ".join(failures))

    def _restore_one(self, mngr: Any, step: int, target_like: Any, expected: dict | None, allowed: tuple) -> tuple:
        path = self.path(step)
        try:
            record = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
            if record["format"] != FORMAT:
                raise ValueError(f"format {record['format']!r}, not {FORMAT!r}")
            saved, meta = record["leaves"], record["meta"]
            stored = [(tuple(leaf["stored"][0]), np.dtype(leaf["stored"][1])) for leaf in saved]
        except Exception as e:
            raise CorruptCheckpointError(f"corrupt checkpoint {path}: unreadable meta: {_one_line(e)}") from None
        if expected is not None:
            if "config" not in meta:
                raise ConfigMismatchError(f"checkpoint {path} has no 'config' in its meta to compare with")
            if diffs := config_differences(meta["config"], expected, allowed):
                shown = ", ".join(f"{p} (checkpoint {s!r}, expected {e!r})" for p, s, e in diffs[:3])
                shown += f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
                raise ConfigMismatchError(f"checkpoint {path} was written by a different config: {shown}")
        paths, targets, treedef = _flatten(target_like)
        theirs = [f"{leaf['path']} {leaf['dtype']}{tuple(leaf['shape'])}" for leaf in saved]
        ours = [f"{p} {dtype}{tuple(shape)}" for p, t in zip(paths, targets) for shape, dtype in [_spec(t, p)]]
        if theirs != ours:
            i = next(i for i, (a, b) in enumerate(zip(theirs + ["nothing"], ours + ["nothing"])) if a != b)
            raise StructureMismatchError(f"checkpoint {path} ({len(theirs)} leaves) does not match the target "
                                         f"({len(ours)} leaves) at leaf {i}: {(theirs + ['nothing'])[i]} in the "
                                         f"checkpoint, {(ours + ['nothing'])[i]} in the target")
        abstract = {str(i): np.empty(*spec) for i, spec in enumerate(stored) if np.prod(spec[0])}
        abstract["step"] = np.zeros((), np.int64)
        try:
            with _abandoned_reads_silenced():
                arrays = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))).state
        except Exception as e:  # tensorstore / orbax errors on truncated or garbled files
            raise CorruptCheckpointError(f"corrupt checkpoint {path}/state: {_one_line(e)}") from None
        out = []
        for i, (leaf, (shape, dtype), target) in enumerate(zip(saved, stored, targets)):
            data = np.asarray(arrays.get(str(i), np.zeros(shape, dtype)))
            crc = leaf["crc32"]  # None: written in shards by several processes (no whole-leaf checksum)
            if data.shape != shape or data.dtype != dtype or (crc is not None and _crc32(data) != crc):
                raise CorruptCheckpointError(f"corrupt checkpoint {path}: leaf {leaf['path']} fails its checksum")
            out.append(_to_target_kind(data, target, leaf["key_impl"]))
        return jax.tree_util.tree_unflatten(treedef, out), meta
