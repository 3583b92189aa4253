"""Shared test setup.

The folders under ``tests/`` have no ``__init__.py`` (``tests/agents`` as a package
would clash with the real ``agents``), so the shared modules next to this file,
``fakes`` (known models, a fake vector env) and ``helpers`` (repository paths, script
runners, run-directory readers, small configs), are imported by their plain names from
any test folder: this folder goes on ``sys.path`` here. A folder without
``__init__.py`` never shadows a real package of the same name (``agents``,
``dreamer``, ``benchmarks``): the import system prefers a regular package wherever it
sits on the path.
"""

from __future__ import annotations

import os
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))
if TESTS not in sys.path:  # pytest's default import mode has put it there already; other modes do not
    sys.path.insert(0, TESTS)
