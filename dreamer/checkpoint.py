"""Checkpoints: everything a run needs to resume, saved atomically, restored bit for bit.

``<run_dir>/checkpoints/<step>/`` is one step of an orbax-checkpoint ``CheckpointManager``
with two items: ``state``, the array leaves of the state pytree (params, optimizer state,
replay, PRNG keys; tensorstore, OCDBT, zstd, so a large replay streams to disk), and
``meta``, JSON: the caller's ``meta`` dict (resolved config, counters, commit) and a record of
every leaf (key path, shape, dtype, CRC-32). Orbax does the file work: it writes a step into
``<step>.orbax-checkpoint-tmp`` and renames it into place when complete, so a process killed
at any point (kill -9 included) leaves the earlier checkpoints intact; it lists finalized
steps only, removes a killed save's leftovers when the next save starts, and keeps the newest
``keep`` steps (renaming old ones into ``.deleted/`` first, so a kill mid-deletion never
leaves a half-deleted step). One writer per run directory; local (POSIX) file systems.

Done here, because orbax does not:

* restore into the structure, shapes and dtypes of ``target_like`` (concrete leaves or
  ``jax.ShapeDtypeStruct``): jax arrays come back as jax arrays on the target's sharding (the
  default device for a ``ShapeDtypeStruct`` without one), NumPy arrays as writable NumPy
  arrays, Python and NumPy scalars as the same type, typed PRNG keys as keys of the same
  implementation. A different structure, shape or dtype is refused (orbax would cast);
* the config check: ``expected_config`` must equal the saved ``meta["config"]`` outside
  ``allowed_differences``; the error names the first differing fields;
* a CRC-32 per leaf: orbax reports truncated or garbled files, but restores flipped or zeroed
  bytes in a chunk without a word (the checkpoint tests show it). A checkpoint that fails to
  load is skipped for the next older one with a logged warning; if none loads, that is a
  :class:`CorruptCheckpointError`;
* one timeline per run directory: saving step ``s`` removes checkpoints of later steps (left
  by restoring an older one), and re-saving an existing step (the end of a run saves its last
  step again, with the final updates) writes the new copy aside, then swaps it in.

Errors are :class:`CheckpointError` (a ``ValueError``) subclasses with a one-line message.
:func:`install_signal_handlers` turns SIGINT / SIGTERM into a flag the training loop polls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import sys
import warnings
import zlib
from pathlib import Path
from typing import Any, Iterator, Mapping, NamedTuple, Sequence

import jax
import numpy as np

log = logging.getLogger(__name__)

FORMAT = "dreamer-checkpoint/2"
_DELETED, _PENDING = ".deleted", ".pending"  # old steps on their way out; a re-saved step's new copy


class CheckpointError(ValueError):
    """A checkpoint could not be saved or restored; the message is one line."""


class NoCheckpointError(CheckpointError):
    """No complete checkpoint exists."""


class ConfigMismatchError(CheckpointError):
    """The checkpoint was written by a different config."""


class StructureMismatchError(CheckpointError):
    """The checkpoint's leaves do not match ``target_like`` (paths, shapes or dtypes)."""


class CorruptCheckpointError(CheckpointError):
    """A checkpoint's files are unreadable or fail their checksums."""


class _Leaf(NamedTuple):
    path: str
    shape: list
    dtype: str
    stored_shape: list  # key data for typed PRNG keys
    stored_dtype: str
    crc32: int
    key_impl: str | None


def _is_key(dtype: Any) -> bool:
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _spec(x: Any, path: str) -> tuple[list, str]:
    x = np.asarray(x) if isinstance(x, (bool, int, float)) else x
    if getattr(x, "dtype", None) is None or getattr(x, "shape", None) is None:
        raise StructureMismatchError(f"leaf {path} of type {type(x).__name__} is not an array (put it in meta)")
    return list(x.shape), str(x.dtype if _is_key(x.dtype) else np.dtype(x.dtype))


def _crc32(data: np.ndarray) -> int:
    return zlib.crc32(np.ascontiguousarray(data).reshape(-1).view(np.uint8))


def _host(x: Any, path: str) -> tuple[np.ndarray, _Leaf]:
    """A leaf's bytes on the host (key data for typed keys) and its record."""
    shape, dtype = _spec(x, path)
    impl = str(jax.random.key_impl(x)) if _is_key(getattr(x, "dtype", None)) else None
    data = np.asarray(jax.random.key_data(x) if impl else x)
    return data, _Leaf(path, shape, dtype, list(data.shape), str(data.dtype), _crc32(data), impl)


def _flatten(tree: Any) -> tuple[list[str], list[Any], Any]:
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    return [jax.tree_util.keystr(p) or "<root>" for p, _ in leaves], [x for _, x in leaves], treedef


def _to_target_kind(data: np.ndarray, target: Any, key_impl: str | None) -> Any:
    if isinstance(target, np.generic):
        return data[()]
    if isinstance(target, bool | int | float):
        return type(target)(data.item())
    if isinstance(target, np.ndarray):
        return data if data.flags.writeable else data.copy()
    sharding = getattr(target, "sharding", None) or jax.sharding.SingleDeviceSharding(jax.devices()[0])
    return jax.device_put(jax.random.wrap_key_data(data, impl=key_impl) if key_impl else data, sharding)


def _json_default(x: Any) -> Any:
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray) and x.size <= 64:
        return x.tolist()
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return dataclasses.asdict(x)
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"{type(x).__name__} is not JSON serializable")


def _differences(saved: Any, expected: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Dotted paths where two JSON-like configs differ, as ``(path, saved, expected)``."""
    if isinstance(saved, Mapping) and isinstance(expected, Mapping):
        out = []
        for key in list(saved) + [k for k in expected if k not in saved]:
            path = f"{prefix}.{key}" if prefix else str(key)
            missing = "<missing>"
            out += _differences(saved.get(key, missing), expected.get(key, missing), path)
        return out
    numbers = isinstance(saved, int | float) and isinstance(expected, int | float)
    if numbers and not isinstance(saved, bool) and not isinstance(expected, bool):
        same = saved == expected or (saved != saved and expected != expected)  # NaN == NaN here
    else:
        same = saved == expected and type(saved) is type(expected)
    return [] if same else [(prefix or "<root>", saved, expected)]


def _orbax_noise(exc: BaseException | None) -> bool:
    if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
        return True
    tb = getattr(exc, "__traceback__", None)
    while tb is not None and f"{os.sep}orbax{os.sep}" not in tb.tb_frame.f_code.co_filename:
        tb = tb.tb_next
    return tb is not None


def _drop_orphaned_read_reports() -> None:
    """Keep the reads orbax leaves running after a failed restore off stderr.

    orbax gathers a restore's array reads in one event loop and closes that loop when one read
    fails; the reads still in flight then report "Event loop is closed", "exception was never
    retrieved" or "coroutine ... was never awaited", tens to hundreds of tracebacks at garbage
    collection or exit. Closing the manager cannot stop them (it holds no handle on that loop).
    The checkpoint is already reported corrupt, so those reports, and only those, are dropped.
    """
    if getattr(sys.unraisablehook, "drops_orbax_noise", False):
        return
    previous = sys.unraisablehook
    sys.unraisablehook = lambda u: None if _orbax_noise(u.exc_value) else previous(u)
    sys.unraisablehook.drops_orbax_noise = True
    logging.getLogger("asyncio").addFilter(lambda r: not (r.exc_info and _orbax_noise(r.exc_info[1])))
    warnings.filterwarnings("ignore", r"coroutine '.*' was never awaited", RuntimeWarning)


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
        import orbax.checkpoint as ocp

        options = dict(max_to_keep=self.keep, todelete_subdir=_DELETED, enable_async_checkpointing=False,
                       save_root_metadata=False, lightweight_initialize=True, **options)
        return ocp.CheckpointManager(directory or self.directory, options=ocp.CheckpointManagerOptions(**options))

    def steps(self) -> list[int]:
        """Steps of the finalized checkpoints, ascending."""
        with self._manager(create=False) as mngr:
            return sorted(mngr.all_steps())

    def latest(self) -> int | None:
        """The newest finalized checkpoint's step, or None."""
        steps = self.steps()
        return steps[-1] if steps else None

    def path(self, step: int) -> Path:
        return self.directory / str(int(step))

    def save(self, step: int, state: Any, meta: Mapping[str, Any] | None = None) -> Path:
        """Write checkpoint ``step`` of ``state`` (array pytree) and ``meta`` (JSON-able dict).

        ``meta`` comes back as JSON gives it (tuples as lists, NumPy scalars as numbers).
        Checkpoints of later steps are removed first; an existing one of ``step`` is replaced.
        """
        import orbax.checkpoint as ocp

        if not isinstance(step, int | np.integer) or isinstance(step, bool) or step < 0:
            raise CheckpointError(f"checkpoint step must be a non-negative integer, got {step!r}")
        step = int(step)
        try:
            meta = json.loads(json.dumps(dict(meta or {}), default=_json_default))
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint meta is not JSON-serializable: {e}") from None
        arrays, leaves = {"step": np.asarray(step, np.int64)}, []  # orbax refuses an empty tree
        for i, (path, leaf) in enumerate(zip(*_flatten(state)[:2])):
            data, record = _host(leaf, path)
            if data.size:  # orbax refuses zero-size arrays; the record says all about them
                arrays[str(i)] = data
            leaves.append(record)
        record = {"format": FORMAT, "step": step, "leaves": leaves, "meta": meta}
        args = ocp.args.Composite(state=ocp.args.StandardSave(arrays), meta=ocp.args.JsonSave(record))
        with self._manager(cleanup_tmp_directories=True) as mngr:
            for leftover in (_DELETED, _PENDING):
                shutil.rmtree(self.directory / leftover, ignore_errors=True)
            later = [s for s in mngr.all_steps() if s > step]
            if later:
                log.warning("saving checkpoint %d: removing checkpoints %s of an abandoned timeline", step, later)
            for s in later:
                mngr.delete(s)
            if step not in mngr.all_steps():
                mngr.save(step, args=args)
            else:  # the old copy stays until the new one is complete; then two renames swap them
                with self._manager(self.directory / _PENDING) as pending:
                    pending.save(step, args=args)
                os.replace(self.path(step), self.directory / _PENDING / "old")
                os.replace(self.directory / _PENDING / str(step), self.path(step))
        for leftover in (_DELETED, _PENDING):
            shutil.rmtree(self.directory / leftover, ignore_errors=True)
        return self.path(step)

    def restore(
        self,
        target_like: Any,
        *,
        step: int | None = None,
        expected_config: Any = None,
        allowed_differences: Sequence[str] = (),
    ) -> tuple[Any, dict]:
        """``(state, meta)`` of the newest checkpoint that loads (or of ``step``), shaped like ``target_like``.

        ``allowed_differences`` are dotted config paths that may differ (a path covers
        everything below it). Without ``step``, a corrupt checkpoint is skipped for the next
        older one; config and structure mismatches raise at once.
        """
        steps = self.steps()
        if step is not None and step not in steps:
            raise NoCheckpointError(f"no complete checkpoint for step {step} in {self.directory}")
        if not steps:
            raise NoCheckpointError(f"no complete checkpoint in {self.directory}")
        if dataclasses.is_dataclass(expected_config) and not isinstance(expected_config, type):
            expected_config = dataclasses.asdict(expected_config)
        expected = None if expected_config is None else json.loads(json.dumps(expected_config, default=_json_default))
        failures: list[str] = []
        with self._manager(create=False) as mngr:
            for s in [step] if step is not None else steps[::-1]:
                try:
                    state, meta = self._restore_one(mngr, s, target_like, expected, tuple(allowed_differences))
                except CorruptCheckpointError as e:
                    if step is not None:
                        raise
                    failures.append(str(e))
                    continue
                if failures:
                    log.warning("%s; falling back to checkpoint %d", " | ".join(failures), s)
                return state, meta
        raise CorruptCheckpointError(
            f"no checkpoint in {self.directory} could be loaded ({len(failures)} corrupt): " + " | ".join(failures)
        )

    def _restore_one(self, mngr: Any, step: int, target_like: Any, expected: Any, allowed: tuple[str, ...]) -> tuple[Any, dict]:
        import orbax.checkpoint as ocp

        path = self.path(step)
        try:
            record = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())).meta
            if record["format"] != FORMAT or record["step"] != step:
                raise ValueError(f"not a {FORMAT} record of step {step}")
            saved, meta = [_Leaf(*leaf) for leaf in record["leaves"]], record["meta"]
        except Exception as e:
            raise CorruptCheckpointError(f"corrupt checkpoint {path}: unreadable meta: {_one_line(e)}") from None
        if expected is not None:
            if "config" not in meta:
                raise ConfigMismatchError(f"checkpoint {path} has no 'config' in its meta to compare with")
            diffs = [d for d in _differences(meta["config"], expected)
                     if not any(d[0] == a or d[0].startswith(a + ".") for a in allowed)]
            if diffs:
                shown = ", ".join(f"{p} (checkpoint {s!r}, expected {e!r})" for p, s, e in diffs[:3])
                more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
                raise ConfigMismatchError(f"checkpoint {path} was written by a different config: {shown}{more}")
        paths, targets, treedef = _flatten(target_like)
        for i, (leaf, tpath, target) in enumerate(zip(saved, paths, targets)):
            if leaf.path != tpath:
                raise StructureMismatchError(f"checkpoint {path} does not match the target structure: "
                                             f"leaf {i} is {leaf.path} in the checkpoint but {tpath} in the target")
            shape, dtype = _spec(target, tpath)
            if [shape, dtype] != [leaf.shape, leaf.dtype]:
                raise StructureMismatchError(f"checkpoint {path} does not match the target at {tpath}: checkpoint "
                                             f"{leaf.dtype}{tuple(leaf.shape)}, target {dtype}{tuple(shape)}")
        if len(saved) != len(paths):
            n = min(len(saved), len(paths))
            extra = f"{saved[n].path} in the checkpoint" if len(saved) > n else f"{paths[n]} in the target"
            raise StructureMismatchError(f"checkpoint {path} has {len(saved)} leaves but the target has "
                                         f"{len(paths)}: first extra leaf {extra}")

        abstract = {"step": np.zeros((), np.int64)}
        abstract.update({str(i): np.empty(l.stored_shape, l.stored_dtype) for i, l in enumerate(saved) if np.prod(l.stored_shape)})
        try:
            arrays = mngr.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))).state
        except Exception as e:  # tensorstore / orbax errors on truncated or garbled files
            _drop_orphaned_read_reports()
            raise CorruptCheckpointError(f"corrupt checkpoint {path}/state: {_one_line(e)}") from None
        if int(arrays["step"]) != step:
            raise CorruptCheckpointError(f"corrupt checkpoint {path}: state of step {arrays['step']}")
        out = []
        for i, (leaf, target) in enumerate(zip(saved, targets)):
            data = np.asarray(arrays.get(str(i), np.zeros(leaf.stored_shape, leaf.stored_dtype)))
            if list(data.shape) != leaf.stored_shape or str(data.dtype) != leaf.stored_dtype or _crc32(data) != leaf.crc32:
                raise CorruptCheckpointError(f"corrupt checkpoint {path}: leaf {leaf.path} fails its checksum")
            out.append(_to_target_kind(data, target, leaf.key_impl))
        return jax.tree_util.tree_unflatten(treedef, out), meta


class ShutdownFlag:
    """Yielded by :func:`install_signal_handlers`: true once SIGINT / SIGTERM arrived (``signum``)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    def __bool__(self) -> bool:
        return self.signum is not None


@contextlib.contextmanager
def install_signal_handlers() -> Iterator[ShutdownFlag]:
    """Within the block, SIGINT / SIGTERM set the yielded flag instead of stopping the process,
    so the loop can checkpoint and exit; a second signal goes to the previous handler (a
    second Ctrl-C raises ``KeyboardInterrupt``). Restores the previous handlers on exit.
    Main thread only."""
    flag, previous = ShutdownFlag(), {}

    def handler(signum: int, frame: Any) -> None:
        if not flag:
            flag.signum = signum
            return
        old = previous[signum]
        signal.signal(signum, old)
        if callable(old):
            old(signum, frame)
        elif old == signal.SIG_DFL:
            os.kill(os.getpid(), signum)

    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)
