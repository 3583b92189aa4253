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
    the run started, continuing across resumes when ``time_offset`` is given). A logger that
    is not ``enabled`` (a multi-host run's other processes) writes nothing and only returns
    the records.
    """

    def __init__(self, run_dir: str, *, tensorboard: bool = True, time_offset: float = 0.0, enabled: bool = True):
        self.path = os.path.join(run_dir, "metrics.jsonl")
        self._start = time.time() - time_offset
        self._tb = self._file = None
        if not enabled:
            return
        os.makedirs(run_dir, exist_ok=True)
        self._file = open(self.path, "a", buffering=1)
        if tensorboard:
            from tensorboardX import SummaryWriter

            self._tb = SummaryWriter(os.path.join(run_dir, "tb"))

    @property
    def elapsed(self) -> float:
        return time.time() - self._start

    def write(self, env_steps: int, updates: int, metrics: Mapping[str, float]) -> dict:
        record = {"env_steps": int(env_steps), "updates": int(updates), "time": round(self.elapsed, 3)}
        record.update({k: float(v) for k, v in metrics.items()})
        if self._file is not None:
            self._file.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for k, v in metrics.items():
                self._tb.add_scalar(k, float(v), int(env_steps))
        return record

    def close(self) -> None:
        if self._file is not None:
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


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class Progress:
    """What a person watching a run sees: a progress bar on a terminal, or, when the output
    is a file or a pipe, one text line per log record (the convention of cleanrl and
    Stable-Baselines3 logs), so a redirected log stays readable.

    ``show(record, counters)`` takes each record the logger wrote (train metrics or an
    evaluation); the bar's postfix and the lines carry env steps, the training games' return,
    the last evaluation, the loss terms and the speeds.
    """

    LOSSES = (("loss/value", "v"), ("loss/policy", "p"), ("loss/reward", "r"), ("loss/consistency", "c"))

    def __init__(self, total: int, initial: int = 0, *, enabled: bool = True, stream=None, label: str = ""):
        import sys

        self.total, self.enabled = total, enabled
        self.prefix = f"{label} | " if label else ""  # names the run of a group in each text line
        self.stream = stream or sys.stdout
        self.bar = None
        self.fields: dict[str, str] = {}
        if enabled and hasattr(self.stream, "isatty") and self.stream.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True, desc="env steps",
                            file=self.stream)

    def update(self, steps: int) -> None:
        if self.bar is not None:
            self.bar.update(steps)

    def show(self, record: Mapping[str, float], counters) -> None:
        """Takes one log record (train metrics, or an evaluation's)."""
        if not self.enabled:
            return
        f = self.fields
        if "eval/return_mean" in record:
            f["eval"] = f"{record['eval/return_mean']:.1f}"
            if self.bar is not None:
                self.bar.set_postfix({k: v for k, v in f.items() if k in ("return", "eval")}, refresh=True)
            else:
                capped = record.get("eval/capped_fraction", 0.0)
                print(f"{self.prefix}env steps {record['env_steps']:,}/{self.total:,} | evaluation: return "
                      f"{record['eval/return_mean']:.1f} ± {record['eval/return_std']:.1f} over "
                      f"{int(record['eval/episodes'])} games" + (f", {capped:.0%} cut at the step cap" if capped else "")
                      + f" | {_duration(record['time'])}", file=self.stream, flush=True)
            return
        if "train/episode_return" in record:
            f["return"] = f"{record['train/episode_return']:.1f}"
        if "loss/total" in record:
            parts = " ".join(f"{short} {record[k]:.2f}" for k, short in self.LOSSES if k in record)
            f["loss"] = f"{record['loss/total']:.2f} ({parts})"
        if "speed/env_steps_per_s" in record:
            f["speed"] = f"{record['speed/env_steps_per_s']:.0f} steps/s, {record['speed/updates_per_s']:.1f} updates/s"
        if self.bar is not None:
            self.bar.set_postfix({k: v for k, v in f.items() if k in ("return", "eval")}, refresh=True)
            return
        line = [f"{self.prefix}env steps {record['env_steps']:,}/{self.total:,}", f"updates {record['updates']:,}"]
        line += [f"{name} {f[name]}" for name in ("return", "eval", "loss", "speed") if name in f]
        line.append(_duration(record["time"]))
        print(" | ".join(line), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
