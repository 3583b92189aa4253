"""The README's main job, as a newcomer runs it: ``python scripts/train.py`` with no flags.

It must reach CartPole's 195 within 5,000 env steps and stop by itself, say so in its final
report, and print no warning on the way. How long it takes is a benchmark figure
(``benchmarks/learning.py``, quoted in the README), not asserted here: a test's wall-clock
depends on whatever else shares the machine.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

from helpers import ROOT

HANG_GUARD_SECONDS = 900  # a hang, not a speed check (the README's figure: within 4 minutes on 2 quiet cores)


@pytest.mark.slow  # the README's main job to the end: about 3 minutes on 2 cores
def test_the_default_run_learns_and_stops_by_itself(tmp_path):
    run_dir = tmp_path / "default"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "train.py"), "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=HANG_GUARD_SECONDS, cwd=tmp_path,
                          env={**os.environ, "DREAMER_COMPILE_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["first_reached"]["195"]["env_steps"] <= 5_000
    assert summary["stopped"] and summary["env_steps"] < 10_000  # it stopped early, by itself
    # The report says it, and nothing on stderr is a warning.
    assert "eval return first reached 195 at" in proc.stderr and "curves.png" in proc.stderr
    assert not re.search(r"warn", proc.stderr, re.IGNORECASE), proc.stderr
    # Not a terminal: progress comes as text lines, the last one after the final evaluation.
    lines = [line for line in proc.stdout.splitlines() if line.startswith("env steps")]
    assert lines and any("evaluation" in line for line in lines)
