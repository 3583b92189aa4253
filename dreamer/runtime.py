"""Process-wide JAX settings for training: a persistent compilation cache, and XLA command
buffers for the search's loops on a GPU.

Call :func:`configure` once, before the first JAX computation (the scripts do).

* **Compilation cache.** A run compiles its act, train and evaluation programs afresh each
  time: seconds on a CPU, about 50 s at the Atari presets on a GPU. JAX's persistent cache
  stores the compiled programs on disk, so a repeated or resumed run with the same shapes
  skips them (measured on a 2-core CPU, the debug preset: 28 s to 7 s from launch to
  exit). Directory: ``$DREAMER_COMPILE_CACHE``, default ``~/.cache/dreamer/jax``
  (``DREAMER_COMPILE_CACHE=`` turns it off).
* **Command buffers (GPU).** mctx runs its simulations in data-dependent ``while`` loops,
  and on a GPU each iteration sends its condition to the host: 23 to 26 µs per iteration on
  an H200. Recorded as CUDA graphs (``--xla_gpu_enable_command_buffer`` with ``WHILE`` and
  ``CONDITIONAL``), an iteration took 6.5 to 7.6 µs (``../shared/gpu/README.md``). The flags
  are added to ``XLA_FLAGS`` only when a CUDA plugin for JAX is installed and the user has not
  set command buffers themselves.
"""

from __future__ import annotations

import importlib.util
import os

import jax

COMMAND_BUFFER_FLAGS = (
    "--xla_gpu_enable_command_buffer=FUSION,CUBLAS,CUBLASLT,CUSTOM_CALL,CUDNN,WHILE,CONDITIONAL "
    "--xla_gpu_graph_min_graph_size=1"
)
DEFAULT_CACHE = os.path.join(os.path.expanduser("~"), ".cache", "dreamer", "jax")


def has_cuda_plugin() -> bool:
    """Whether a CUDA plugin for JAX is installed (checked without starting a backend)."""
    def found(name: str) -> bool:
        try:
            return importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:  # a parent package is missing
            return False

    return any(found(name) for name in ("jax_cuda13_plugin", "jax_cuda12_plugin", "jax_plugins.xla_cuda13",
                                        "jax_plugins.xla_cuda12"))


def configure(cache_dir: str | None = None, command_buffers: bool = True) -> dict:
    """Sets the compilation cache and, with a CUDA plugin, the command-buffer flags; returns
    what it set. ``cache_dir=None`` reads ``$DREAMER_COMPILE_CACHE`` (default above)."""
    done = {}
    flags = os.environ.get("XLA_FLAGS", "")
    if command_buffers and "xla_gpu_enable_command_buffer" not in flags and has_cuda_plugin():
        os.environ["XLA_FLAGS"] = f"{flags} {COMMAND_BUFFER_FLAGS}".strip()
        done["XLA_FLAGS"] = os.environ["XLA_FLAGS"]
    cache = os.environ.get("DREAMER_COMPILE_CACHE", DEFAULT_CACHE) if cache_dir is None else cache_dir
    if cache:
        os.makedirs(cache, exist_ok=True)
        jax.config.update("jax_compilation_cache_dir", cache)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
        done["compilation_cache"] = cache
    return done
