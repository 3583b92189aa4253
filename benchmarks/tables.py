"""Markdown tables and their numbers, for every benchmark; kept apart from ``harness`` so that
the Atari aggregator, which needs no jax, can print them without importing it."""

from __future__ import annotations

from typing import Any, Sequence


def num(x: float | None, digits: int = 1) -> str:
    """``x`` to ``digits`` decimals; an em dash for None."""
    return "—" if x is None else f"{x:.{digits}f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A markdown table of ``str(cell)``: the first column left-aligned, the others right-aligned."""
    cells = [[str(c) for c in r] for r in (header, *rows)]
    widths = [max(3, *(len(r[i]) for r in cells)) for i in range(len(header))]

    def line(r):
        return "| " + " | ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths))) + " |"

    rule = "| " + " | ".join("-" * (w - 1) + ":" if i else "-" * w for i, w in enumerate(widths)) + " |"
    return "\n".join([line(cells[0]), rule, *map(line, cells[1:])])
