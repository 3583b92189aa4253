"""Small helpers the benchmark scripts share: the commit and CPU a result came from, and writing it."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

from dreamer.logger import git_commit as commit  # noqa: F401  (the one commit helper; jax-free)


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo, else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def write_result(out_dir: str | os.PathLike, name: str, record: dict, indent: int = 2) -> str:
    """Writes ``record`` as JSON to ``<out_dir>/<name>`` (directories made as needed; values
    JSON does not know are written as ``str``); prints and returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    with open(path, "w") as f:
        json.dump(record, f, indent=indent, default=str)
        f.write("\n")
    print(f"wrote {path}")
    return path
