"""Small helpers the benchmark scripts share: the commit a result came from, and writing it."""

from __future__ import annotations

import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def commit() -> str:
    """Short HEAD hash, with ``-dirty`` when tracked files have uncommitted changes."""
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True, text=True)
    return out.stdout.strip() + ("-dirty" if dirty.stdout.strip() else "")


def write_result(out_dir: str, name: str, record: dict, indent: int = 2) -> str:
    """Writes ``record`` to ``<out_dir>/<name>`` (directories made as needed); returns the path."""
    os.makedirs(out_dir, exist_ok=True)
    path = os.path.join(out_dir, name)
    with open(path, "w") as f:
        json.dump(record, f, indent=indent)
    print(f"wrote {path}")
    return path
