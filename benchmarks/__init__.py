"""Benchmarks: harnesses and aggregation of results (see benchmarks/atari100k)."""
