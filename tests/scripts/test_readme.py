"""The README's Python examples run as written.

Every ```python block of README.md is executed, the blocks of one ``##`` section in
order in one namespace (as a reader pastes them), in a temporary working directory
(the examples write their run directories relative to it). Sections with known
examples also check what the example computed.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import ROOT, checkpoint_steps, read_metrics


def python_blocks() -> dict[str, list[str]]:
    """``{section heading: [code, ...]}`` for the sections holding ```python blocks."""
    sections: dict[str, list[str]] = {}
    heading = "(top)"
    for match in re.finditer(r"^## ([^\n]+)$|^```python\n(.*?)^```$", (ROOT / "README.md").read_text(), re.M | re.S):
        if match.group(1) is not None:
            heading = match.group(1).strip()
        else:
            sections.setdefault(heading, []).append(match.group(2))
    return sections


SECTIONS = python_blocks()
PLANNER, BRING_YOUR_OWN = "Use the planner from your own agent", "Bring your own world model or env"


def run_section(heading: str, cwd, monkeypatch) -> dict:
    monkeypatch.chdir(cwd)
    namespace = {"__name__": "__readme__"}
    for i, code in enumerate(SECTIONS[heading]):
        exec(compile(code, f"README.md[{heading}, block {i + 1}]", "exec"), namespace)
    return namespace


def check_planner(ns, cwd):
    out = ns["out"]
    np.testing.assert_array_equal(out.action, [1, 1])  # "moves right" from states 0 and 3
    weights = np.asarray(out.action_weights)
    np.testing.assert_allclose(weights.sum(-1), 1.0, rtol=1e-5)
    assert np.all(weights[:, 1] > 0.5)


def check_bring_your_own(ns, cwd):
    cfg, counters = ns["cfg"], ns["counters"]
    assert counters.env_steps == cfg.loop.env_steps and counters.updates > 0
    run_dir = cwd / "runs" / "tiny-model"
    # the final checkpoint; a loaded machine may have written a periodic (wall-clock) one before it
    assert checkpoint_steps(run_dir)[-1] == cfg.loop.env_steps
    losses = [r["loss/total"] for r in read_metrics(run_dir) if "loss/total" in r]
    assert losses and np.all(np.isfinite(losses))


CHECKS = {PLANNER: check_planner, BRING_YOUR_OWN: check_bring_your_own}


def test_the_documented_examples_are_there():
    assert set(CHECKS) <= set(SECTIONS), sorted(SECTIONS)


@pytest.mark.filterwarnings("ignore:Some donated buffers were not usable")
@pytest.mark.parametrize("heading", sorted(SECTIONS))
def test_readme_section_runs(heading, tmp_path, monkeypatch):
    ns = run_section(heading, tmp_path, monkeypatch)
    if heading in CHECKS:
        CHECKS[heading](ns, tmp_path)
