"""An AlphaZero-style maze agent: ``dreamer.plan`` in a known model (a JAX grid simulator).

See :mod:`agents.maze.agent`; run it with ``python -m agents.maze.agent``.
"""
