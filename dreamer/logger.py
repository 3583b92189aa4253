"""Metric sinks: JSON lines and TensorBoard event files in a run directory."""

from __future__ import annotations

import json
import os
import subprocess
import time
from typing import Mapping


class Logger:
    """Writes flat ``{name: scalar}`` dicts to ``metrics.jsonl`` and TensorBoard.

    Every record carries ``env_steps``, ``updates`` and wall-clock ``time`` (seconds since
    the run started, continuing across resumes when ``time_offset`` is given).
    """

    def __init__(self, run_dir: str, *, tensorboard: bool = True, time_offset: float = 0.0):
        os.makedirs(run_dir, exist_ok=True)
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self._file = open(self.path, "a", buffering=1)
        self._start = time.time() - time_offset
        self._tb = None
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(run_dir, "tb"))

    @property
    def elapsed(self) -> float:
        return time.time() - self._start

    def write(self, env_steps: int, updates: int, metrics: Mapping[str, float]) -> dict:
        record = {"env_steps": int(env_steps), "updates": int(updates), "time": round(self.elapsed, 3)}
        record.update({k: float(v) for k, v in metrics.items()})
        self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, float(v), int(env_steps))
        return record

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()


def truncate_metrics(path: str, env_steps: int) -> int:
    """Drops the records past ``env_steps`` (written after the checkpoint a run resumes from),
    so a resumed run's curve has no repeated stretch. Atomic; returns how many were dropped."""
    if not os.path.exists(path):
        return 0
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for line in lines:
        try:
            if json.loads(line)["env_steps"] <= env_steps:
                keep.append(line if line.endswith("\n") else line + "\n")
        except (json.JSONDecodeError, KeyError, TypeError):
            continue  # a torn last line from a kill
    if len(keep) == len(lines):
        return 0
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.writelines(keep)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return len(lines) - len(keep)


def read_metrics(path: str) -> list[dict]:
    """All records of a ``metrics.jsonl`` file (a torn last line is skipped)."""
    records = []
    with open(path) as f:
        for line in f:
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def git_commit() -> str:
    """The commit of the code being run ("unknown" outside a git checkout)."""
    here = os.path.dirname(os.path.abspath(__file__))
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        commit = out.stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return (commit + ("-dirty" if dirty else "")) if commit else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"
