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

# One persistent compilation cache for the session, empty at its start: many tests build the
# same small programs (the debug preset's act, train and sweep), and a second compile of the
# same program reads the first from disk (a 32 s compile of a debug run takes 7 s the second
# time on a 2-core CPU). Tests that count compiles count traces (``_cache_size``), which this
# does not change. The directory goes with the session.
import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import jax  # noqa: E402

_COMPILE_CACHE = tempfile.mkdtemp(prefix="dreamer-tests-xla-")
atexit.register(shutil.rmtree, _COMPILE_CACHE, ignore_errors=True)
jax.config.update("jax_compilation_cache_dir", _COMPILE_CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)
