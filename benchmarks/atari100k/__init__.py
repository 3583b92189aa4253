"""Atari-100k harness: one run per (game, seed) (``run.py``) and the aggregate over runs with
reference scores, human-normalized statistics and plots (``aggregate.py``); see README.md."""
