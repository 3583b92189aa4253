"""Atari-100k harness: reference scores, human-normalized aggregates, plots.

Run ``python -m benchmarks.atari100k.aggregate --help``; see README.md.
The names below are loaded lazily so that ``python -m`` does not import the module twice.
"""

_EXPORTS = (
    "EVAL_SCHEMA",
    "PUBLISHED_AGGREGATES",
    "REFERENCE_METHODS",
    "aggregate_scores",
    "bootstrap_ci",
    "discover_runs",
    "human_normalized",
    "interval_estimates",
    "load_reference",
    "reference_aggregates",
    "summarize",
    "write_eval_json",
)
__all__ = list(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        from benchmarks.atari100k import aggregate

        return getattr(aggregate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
