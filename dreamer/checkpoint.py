"""Checkpoints: everything a run needs to resume, written atomically, restored bitwise.

A checkpoint is one directory ``<run_dir>/checkpoints/<step>/`` holding

* ``state/``: the array pytree (params, target params, optimizer state, replay arrays and
  priorities, PRNG keys, counters as arrays), written by orbax-checkpoint (tensorstore,
  OCDBT, zstd) so large replay buffers stream to disk instead of being pickled;
* ``meta.json``: the JSON-able ``meta`` dict (resolved config, git commit, counters, wall
  time) plus this module's record of every leaf: key path, shape, dtype and a CRC-32 of
  its bytes, so a restore is checked bit for bit.

Atomicity: a checkpoint is written into a hidden ``checkpoints/.tmp-<step>-...`` directory
(orbax's own tmp-then-rename inside it, then ``meta.json`` written last via a temp file and
``os.replace``) and becomes visible only by one ``os.rename`` to ``checkpoints/<step>``. A
process killed at any point (``kill -9`` included) leaves every earlier checkpoint intact;
the half-written directory is never considered by :meth:`Checkpointer.steps` and is removed
by the next save. Older checkpoints are pruned (keep the newest ``keep``) only after the
new one is committed, and are renamed away before being deleted so a kill during deletion
cannot leave a half-deleted directory that looks complete. A run directory holds one
timeline: saving step ``s`` removes checkpoints of steps greater than ``s`` (left over from
a timeline abandoned by restoring an older checkpoint), and replaces a checkpoint of step
``s`` itself, renaming the old copy away just before the new one is renamed in. One writer
per run directory; local (POSIX) file systems.

Restore (:meth:`Checkpointer.restore`, :func:`restore`) reads the newest complete
checkpoint into the structure, shapes and dtypes of ``target_like`` (concrete arrays or
``jax.ShapeDtypeStruct``): ``jax.Array`` leaves come back as ``jax.Array`` on the target's
sharding (``ShapeDtypeStruct`` without sharding: the default device), ``np.ndarray`` leaves as
writable NumPy arrays, Python / NumPy scalars as the same type, typed PRNG keys
(``jax.random.key``) as typed keys of the same implementation. Errors are
:class:`CheckpointError` (a ``ValueError``) subclasses with a one-line message:

* :class:`NoCheckpointError`: nothing complete to restore;
* :class:`ConfigMismatchError`: the checkpoint's saved config differs from the expected one
  outside ``allowed_differences`` (names the first differing fields);
* :class:`StructureMismatchError`: leaf paths, shapes or dtypes differ from ``target_like``;
* :class:`CorruptCheckpointError`: unreadable meta, truncated / garbage array files or a
  checksum mismatch. Without an explicit ``step`` the restore then falls back to the next
  older complete checkpoint with a logged warning; it raises if none loads.

:func:`install_signal_handlers` turns SIGINT / SIGTERM into a flag a training loop polls, so
the loop can checkpoint and exit cleanly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import signal
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import jax
import numpy as np

log = logging.getLogger(__name__)

FORMAT = "dreamer-checkpoint/1"
CHECKPOINTS_DIR = "checkpoints"
STATE_DIR = "state"
META_FILE = "meta.json"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
_STEP_KEY = "_step"  # sentinel leaf: orbax refuses empty trees; also cross-checks the step

# Test hook: called with a phase name at each stage of a save ("tmp_created",
# "state_written", "meta_written", "committed", "pruned"). Used by the kill -9 tests.
_phase_hook: Callable[[str], None] | None = None


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


# ----------------------------------------------------------------------------- leaves


def _is_key_dtype(dtype: Any) -> bool:
    return dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key)


def _leaf_spec(x: Any, path: str) -> dict:
    """Shape and dtype of a leaf as recorded in ``meta.json`` (also used for targets)."""
    if isinstance(x, (bool, int, float)):
        arr = np.asarray(x)
        return {"shape": [], "dtype": str(arr.dtype)}
    dtype = getattr(x, "dtype", None)
    shape = getattr(x, "shape", None)
    if dtype is None or shape is None:
        raise StructureMismatchError(
            f"leaf {path} of type {type(x).__name__} is not an array, scalar or ShapeDtypeStruct"
        )
    if _is_key_dtype(dtype):
        return {"shape": list(shape), "dtype": str(dtype)}
    return {"shape": list(shape), "dtype": str(np.dtype(dtype))}


def _storage(x: Any, path: str) -> tuple[np.ndarray, dict]:
    """Host bytes of a leaf to save, and its record (spec plus key implementation)."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        raise CheckpointError(f"leaf {path} is not fully addressable; multi-process checkpoints are not supported")
    dtype = getattr(x, "dtype", None)
    if dtype is None and not isinstance(x, (bool, int, float)):
        raise CheckpointError(f"leaf {path} of type {type(x).__name__} is not an array; put non-array values in meta")
    spec = _leaf_spec(x, path)
    if _is_key_dtype(dtype):
        spec["key_impl"] = str(jax.random.key_impl(x))
        data = np.asarray(jax.random.key_data(x))
    else:
        data = np.asarray(x)
    return data, spec


def _crc32(arr: np.ndarray) -> int:
    if arr.size == 0:
        return 0
    return zlib.crc32(np.ascontiguousarray(arr).reshape(-1).view(np.uint8))


def _flatten(tree: Any) -> tuple[list[str], list[Any], Any]:
    leaves_with_path, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [jax.tree_util.keystr(p) or "<root>" for p, _ in leaves_with_path]
    return paths, [leaf for _, leaf in leaves_with_path], treedef


def _leaf_name(i: int) -> str:
    return f"leaf_{i:05d}"


# ----------------------------------------------------------------------------- orbax


class _QuietOrbax(logging.Filter):
    """Drops orbax's INFO chatter (several lines per save) from the ``absl`` logger."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or "orbax" not in record.pathname


@contextlib.contextmanager
def _quiet_orbax() -> Iterator[None]:
    logger = logging.getLogger("absl")
    quiet = _QuietOrbax()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def _orbax_checkpointer():
    import orbax.checkpoint as ocp

    return ocp, ocp.Checkpointer(ocp.StandardCheckpointHandler())


# ----------------------------------------------------------------------------- files


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(root))


def _write_json_atomic(path: Path, data: Any, fsync: bool) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        json.dump(data, f, indent=1, default=_json_default, allow_nan=True)
        f.write("\n")
        f.flush()
        if fsync:
            os.fsync(f.fileno())
    os.replace(tmp, path)


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


def _remove(path: Path) -> None:
    """Delete a directory so that no half-deleted copy keeps its name: rename first."""
    if not path.exists():
        return
    trash = path.parent / f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex[:8]}"
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


# ----------------------------------------------------------------------------- configs


def _normalise_config(cfg: Any) -> Any:
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        cfg = dataclasses.asdict(cfg)
    return json.loads(json.dumps(cfg, default=_json_default, allow_nan=True))


def config_differences(saved: Any, expected: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Dotted paths where two JSON-like configs differ, as ``(path, saved, expected)``.

    A key missing on one side appears with the sentinel string ``"<missing>"``.
    """
    if isinstance(saved, Mapping) and isinstance(expected, Mapping):
        out: list[tuple[str, Any, Any]] = []
        for key in list(saved) + [k for k in expected if k not in saved]:
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in expected:
                out.append((path, saved[key], "<missing>"))
            elif key not in saved:
                out.append((path, "<missing>", expected[key]))
            else:
                out.extend(config_differences(saved[key], expected[key], path))
        return out
    if _same_number(saved, expected):
        return []
    if saved != expected or type(saved) is not type(expected):
        return [(prefix or "<root>", saved, expected)]
    return []


def _same_number(a: Any, b: Any) -> bool:
    numbers = (int, float)
    if not (isinstance(a, numbers) and isinstance(b, numbers)) or isinstance(a, bool) or isinstance(b, bool):
        return False
    return a == b or (a != a and b != b)  # NaN == NaN here


def _allowed(path: str, allowed: Iterable[str]) -> bool:
    return any(path == a or path.startswith(a + ".") for a in allowed)


# ----------------------------------------------------------------------------- checkpointer


class Checkpointer:
    """Saves and restores ``(state, meta)`` under ``<run_dir>/checkpoints/<step>/``.

    Args:
      run_dir: the run directory; checkpoints go to ``run_dir/checkpoints``.
      keep: how many of the newest complete checkpoints to keep (>= 1).
      config_key: where ``meta`` holds the resolved config dict, compared on restore.
      fsync: flush every file and directory to stable storage before committing, so a
        checkpoint also survives a power loss or a kernel crash (a killed process never
        needs it). Costs one pass of disk writeback per save.
    """

    def __init__(self, run_dir: str | os.PathLike, *, keep: int = 2, config_key: str = "config", fsync: bool = True):
        if not isinstance(keep, int) or keep < 1:
            raise ValueError(f"Checkpointer keep must be an integer >= 1, got {keep!r}")
        self.run_dir = Path(run_dir).absolute()  # orbax refuses relative paths
        self.directory = self.run_dir / CHECKPOINTS_DIR
        self.keep = keep
        self.config_key = config_key
        self.fsync = fsync

    # ------------------------------------------------------------------ listing

    def steps(self) -> list[int]:
        """Steps of the complete checkpoints, ascending."""
        if not self.directory.is_dir():
            return []
        out = []
        for entry in self.directory.iterdir():
            if entry.name.isdigit() and self._is_complete(entry):
                out.append(int(entry.name))
        return sorted(out)

    def latest(self) -> int | None:
        """The newest complete checkpoint's step, or None."""
        steps = self.steps()
        return steps[-1] if steps else None

    def path(self, step: int) -> Path:
        return self.directory / str(int(step))

    @staticmethod
    def _is_complete(path: Path) -> bool:
        # The directory only gets its numeric name by the final rename, after orbax has
        # finalized state/ (renamed from its own tmp dir) and meta.json was written.
        return path.is_dir() and (path / META_FILE).is_file() and (path / STATE_DIR).is_dir()

    def read_meta(self, step: int | None = None) -> dict:
        """The full ``meta.json`` record of a checkpoint (newest complete one by default)."""
        step = self._resolve_step(step)
        return self._read_record(self.path(step))

    def _resolve_step(self, step: int | None) -> int:
        if step is None:
            step = self.latest()
            if step is None:
                raise NoCheckpointError(self._none_message())
        elif not self._is_complete(self.path(step)):
            raise NoCheckpointError(f"no complete checkpoint for step {step} in {self.directory}")
        return step

    def _none_message(self) -> str:
        partial = []
        if self.directory.is_dir():
            partial = [e.name for e in self.directory.iterdir() if e.name.startswith(TMP_PREFIX)]
        extra = f" ({len(partial)} incomplete write(s) ignored)" if partial else ""
        return f"no complete checkpoint in {self.directory}{extra}"

    # ------------------------------------------------------------------ save

    def save(self, step: int, state: Any, meta: Mapping[str, Any] | None = None) -> Path:
        """Write checkpoint ``step`` of ``state`` (array pytree) and ``meta`` (JSON-able dict).

        Returns the checkpoint directory. ``meta`` is stored as JSON (tuples come back as
        lists, NumPy scalars as Python numbers). An existing checkpoint of the same step is
        replaced (with a warning) once the new one is fully written. After the commit,
        checkpoints of later steps and all but the newest ``keep`` are removed.
        """
        if not isinstance(step, (int, np.integer)) or isinstance(step, bool) or step < 0:
            raise CheckpointError(f"checkpoint step must be a non-negative integer, got {step!r}")
        step = int(step)
        meta = dict(meta or {})
        try:
            json.dumps(meta, default=_json_default, allow_nan=True)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint meta is not JSON-serializable: {e}") from None
        final = self.path(step)

        paths, leaves, treedef = _flatten(state)
        arrays: dict[str, np.ndarray] = {_STEP_KEY: np.asarray(step, np.int64)}
        records = []
        for i, (path, leaf) in enumerate(zip(paths, leaves, strict=True)):
            data, spec = _storage(leaf, path)
            spec.update(path=path, storage_shape=list(data.shape), storage_dtype=str(data.dtype), crc32=_crc32(data))
            if data.size:  # orbax refuses zero-size arrays; their shape and dtype say it all
                arrays[_leaf_name(i)] = data
            records.append(spec)

        self.directory.mkdir(parents=True, exist_ok=True)
        self._clean_stale()
        tmp = self.directory / f"{TMP_PREFIX}{step}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        _hook("tmp_created")
        try:
            start = time.perf_counter()
            with _quiet_orbax():
                ocp, ckptr = _orbax_checkpointer()
                ckptr.save(tmp / STATE_DIR, args=ocp.args.StandardSave(arrays))
                ckptr.close()
            _hook("state_written")
            record = {
                "format": FORMAT,
                "step": step,
                "saved_at": time.time(),
                "treedef": str(treedef),
                "num_bytes": int(sum(a.nbytes for a in arrays.values())),
                "leaves": records,
                "meta": meta,
            }
            if self.fsync:
                _fsync_tree(tmp / STATE_DIR)
            _write_json_atomic(tmp / META_FILE, record, self.fsync)
            _hook("meta_written")
            if self.fsync:
                _fsync_dir(tmp)
            if final.exists():  # the old copy goes just before the new one lands
                log.warning("replacing existing checkpoint %s", final)
                _remove(final)
            os.rename(tmp, final)  # the commit
            if self.fsync:
                _fsync_dir(self.directory)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        _hook("committed")
        log.debug(
            "saved checkpoint %s (%.1f MB) in %.2fs", final, record["num_bytes"] / 1e6, time.perf_counter() - start
        )
        self._prune(step)
        _hook("pruned")
        return final

    def _clean_stale(self) -> None:
        """Remove directories left by a killed save or delete (single writer assumed)."""
        for entry in self.directory.iterdir():
            if entry.name.startswith((TMP_PREFIX, TRASH_PREFIX)):
                shutil.rmtree(entry, ignore_errors=True)

    def _prune(self, just_saved: int) -> None:
        steps = self.steps()
        newer = [s for s in steps if s > just_saved]
        if newer:
            log.warning(
                "checkpoint %d saved; removing checkpoints of later steps %s from an abandoned timeline",
                just_saved,
                newer,
            )
        kept = [s for s in steps if s <= just_saved][-self.keep :]
        for s in steps:
            if s not in kept:
                _remove(self.path(s))

    # ------------------------------------------------------------------ restore

    def restore(
        self,
        target_like: Any,
        *,
        step: int | None = None,
        expected_config: Any = None,
        allowed_differences: Sequence[str] = (),
    ) -> tuple[Any, dict]:
        """Restore ``(state, meta)`` from the newest complete checkpoint (or ``step``).

        ``target_like`` gives the structure, shapes, dtypes and array kinds to restore into.
        ``expected_config`` (a dict or config dataclass), when given, must equal
        ``meta[config_key]`` of the checkpoint except at the dotted paths in
        ``allowed_differences`` (a path also allows everything below it, e.g. ``"loop"``).
        Without ``step``, a corrupt checkpoint is reported with a warning and the next older
        one is tried; config and structure mismatches raise at once.
        """
        if step is not None:
            candidates = [self._resolve_step(step)]
        else:
            candidates = list(reversed(self.steps()))
            if not candidates:
                raise NoCheckpointError(self._none_message())
        expected = None if expected_config is None else _normalise_config(expected_config)
        failures = []
        for s in candidates:
            try:
                return self._restore_one(self.path(s), target_like, expected, tuple(allowed_differences))
            except CorruptCheckpointError as e:
                if step is not None:
                    raise
                failures.append(str(e))
                older = [c for c in candidates if c < s]
                if older:
                    log.warning("%s; falling back to checkpoint %d", e, older[0])
        raise CorruptCheckpointError(
            f"no checkpoint in {self.directory} could be loaded ({len(failures)} corrupt): " + " | ".join(failures)
        )

    @staticmethod
    def _read_record(path: Path) -> dict:
        meta_path = path / META_FILE
        try:
            with open(meta_path) as f:
                record = json.load(f)
        except (OSError, ValueError) as e:
            raise CorruptCheckpointError(
                f"corrupt checkpoint: cannot read {meta_path}: {type(e).__name__}: {e}"
            ) from None
        fields = ("path", "shape", "dtype", "storage_shape", "storage_dtype", "crc32")
        if (
            not isinstance(record, dict)
            or record.get("format") != FORMAT
            or not isinstance(record.get("step"), int)
            or not isinstance(record.get("leaves"), list)
            or not all(isinstance(leaf, dict) and all(f in leaf for f in fields) for leaf in record["leaves"])
        ):
            raise CorruptCheckpointError(f"corrupt checkpoint: {meta_path} is not a {FORMAT} record")
        return record

    def _restore_one(self, path: Path, target_like: Any, expected: Any, allowed: tuple[str, ...]) -> tuple[Any, dict]:
        record = self._read_record(path)
        meta = record.get("meta", {})
        if expected is not None:
            self._check_config(path, meta, expected, allowed)
        saved = record["leaves"]
        paths, targets, treedef = _flatten(target_like)
        self._check_structure(path, saved, paths, targets)

        state_dir = path / STATE_DIR
        try:
            with _quiet_orbax():
                ocp, ckptr = _orbax_checkpointer()
                abstract = {_STEP_KEY: jax.ShapeDtypeStruct((), np.int64)}
                for i, rec in enumerate(saved):
                    if int(np.prod(rec["storage_shape"])):
                        abstract[_leaf_name(i)] = jax.ShapeDtypeStruct(
                            tuple(rec["storage_shape"]), np.dtype(rec["storage_dtype"])
                        )
                restored = ckptr.restore(state_dir, args=ocp.args.StandardRestore(abstract))
                ckptr.close()
        except MemoryError:
            raise
        except Exception as e:  # tensorstore / orbax errors on truncated or garbage files
            message = " ".join(str(e).split()).split(" [tensorstore_spec=")[0][:300]
            raise CorruptCheckpointError(f"corrupt checkpoint {state_dir}: {type(e).__name__}: {message}") from None
        if int(np.asarray(restored[_STEP_KEY])) != record["step"]:
            raise CorruptCheckpointError(
                f"corrupt checkpoint {path}: state step {restored[_STEP_KEY]} != meta step {record['step']}"
            )

        leaves = []
        for i, (rec, target) in enumerate(zip(saved, targets, strict=True)):
            shape, dtype = tuple(rec["storage_shape"]), np.dtype(rec["storage_dtype"])
            data = np.asarray(restored[_leaf_name(i)]) if int(np.prod(shape)) else np.zeros(shape, dtype)
            if data.shape != shape or data.dtype != dtype or _crc32(data) != rec["crc32"]:
                raise CorruptCheckpointError(f"corrupt checkpoint {state_dir}: leaf {rec['path']} fails its checksum")
            leaves.append(_to_target_kind(data, target, rec))
        return jax.tree_util.tree_unflatten(treedef, leaves), meta

    def _check_config(self, path: Path, meta: dict, expected: Any, allowed: tuple[str, ...]) -> None:
        if self.config_key not in meta:
            raise ConfigMismatchError(
                f"checkpoint {path} has no {self.config_key!r} in its meta to compare with the expected config"
            )
        diffs = [d for d in config_differences(meta[self.config_key], expected) if not _allowed(d[0], allowed)]
        if diffs:
            shown = ", ".join(f"{p} (checkpoint {s!r}, expected {e!r})" for p, s, e in diffs[:3])
            more = f" and {len(diffs) - 3} more" if len(diffs) > 3 else ""
            raise ConfigMismatchError(f"checkpoint {path} was written by a different config: {shown}{more}")

    @staticmethod
    def _check_structure(path: Path, saved: list[dict], paths: list[str], targets: list[Any]) -> None:
        for i, (rec, tpath, target) in enumerate(zip(saved, paths, targets, strict=False)):
            if rec.get("path") != tpath:
                raise StructureMismatchError(
                    f"checkpoint {path} does not match the target structure: leaf {i} is {rec.get('path')} "
                    f"in the checkpoint but {tpath} in the target"
                )
            spec = _leaf_spec(target, tpath)
            if spec["shape"] != rec["shape"] or spec["dtype"] != rec["dtype"]:
                raise StructureMismatchError(
                    f"checkpoint {path} does not match the target at {tpath}: checkpoint "
                    f"{rec['dtype']}{tuple(rec['shape'])}, target {spec['dtype']}{tuple(spec['shape'])}"
                )
        if len(saved) != len(paths):
            i = min(len(saved), len(paths))
            extra = (
                f"first extra leaf {saved[i]['path']} in the checkpoint"
                if len(saved) > i
                else f"first extra leaf {paths[i]} in the target"
            )
            raise StructureMismatchError(
                f"checkpoint {path} has {len(saved)} leaves but the target has {len(paths)}: {extra}"
            )


def _hook(phase: str) -> None:
    if _phase_hook is not None:
        _phase_hook(phase)


def _to_target_kind(data: np.ndarray, target: Any, rec: dict) -> Any:
    """Give restored host bytes the kind of the target leaf."""
    if isinstance(target, np.generic):
        return data[()]
    if isinstance(target, bool | int | float):
        return type(target)(data.item())
    if isinstance(target, np.ndarray):
        return data if data.flags.writeable else data.copy()
    # jax.Array or ShapeDtypeStruct (or anything array-like with a sharding)
    sharding = getattr(target, "sharding", None)
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    if "key_impl" in rec:
        return jax.device_put(jax.random.wrap_key_data(data, impl=rec["key_impl"]), sharding)
    return jax.device_put(data, sharding)


# ----------------------------------------------------------------------------- functions


def save(
    run_dir: str | os.PathLike,
    step: int,
    state: Any,
    meta: Mapping[str, Any] | None = None,
    *,
    keep: int = 2,
    fsync: bool = True,
) -> Path:
    """``Checkpointer(run_dir, keep=keep, fsync=fsync).save(step, state, meta)``."""
    return Checkpointer(run_dir, keep=keep, fsync=fsync).save(step, state, meta)


def restore(
    run_dir: str | os.PathLike,
    target_like: Any,
    *,
    step: int | None = None,
    expected_config: Any = None,
    allowed_differences: Sequence[str] = (),
    config_key: str = "config",
) -> tuple[Any, dict]:
    """``(state, meta)`` of the newest complete checkpoint; see :meth:`Checkpointer.restore`."""
    return Checkpointer(run_dir, config_key=config_key).restore(
        target_like, step=step, expected_config=expected_config, allowed_differences=allowed_differences
    )


def latest_step(run_dir: str | os.PathLike) -> int | None:
    """The newest complete checkpoint's step in ``run_dir``, or None."""
    return Checkpointer(run_dir).latest()


# ----------------------------------------------------------------------------- signals


class ShutdownFlag:
    """Set by :func:`install_signal_handlers` when a stop signal arrives; poll it."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._event = threading.Event()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def set(self, signum: int | None = None) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def __bool__(self) -> bool:
        return self.requested

    def __repr__(self) -> str:
        return f"ShutdownFlag(requested={self.requested}, signum={self.signum})"


@contextlib.contextmanager
def install_signal_handlers(
    callback: Callable[[int], None] | None = None,
    signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM),
    *,
    second_signal_interrupts: bool = True,
) -> Iterator[ShutdownFlag]:
    """Within the block, SIGINT / SIGTERM set the yielded :class:`ShutdownFlag` (and call
    ``callback(signum)``) instead of killing the process; the loop polls the flag, saves a
    checkpoint and exits. With ``second_signal_interrupts``, a second signal while the flag
    is set goes to the previous handler (a second Ctrl-C raises ``KeyboardInterrupt``).
    The previous handlers are restored on exit. Main thread only.

    Example::

        with install_signal_handlers() as stop:
            while not stop and step < total:
                ...
            ckpt.save(step, state, meta)
    """
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("install_signal_handlers must be called from the main thread")
    flag = ShutdownFlag()
    previous: dict[int, Any] = {}

    def handler(signum: int, frame: Any) -> None:
        if flag.requested and second_signal_interrupts:
            old = previous.get(signum, signal.SIG_DFL)
            signal.signal(signum, old)
            if callable(old):
                old(signum, frame)
            elif old == signal.SIG_DFL:
                os.kill(os.getpid(), signum)
            return
        flag.set(signum)
        if callback is not None:
            callback(signum)

    try:
        for sig in signals:
            previous[sig] = signal.getsignal(sig)
            signal.signal(sig, handler)
        yield flag
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old if old is not None else signal.SIG_DFL)


__all__ = [
    "CheckpointError",
    "Checkpointer",
    "ConfigMismatchError",
    "CorruptCheckpointError",
    "NoCheckpointError",
    "ShutdownFlag",
    "StructureMismatchError",
    "config_differences",
    "install_signal_handlers",
    "latest_step",
    "restore",
    "save",
]
