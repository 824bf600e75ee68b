"""A fluent_swap row's front as a small table: similarity, NLL per token, the whole sentence (wrapped)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich import box
from rich.table import Table

from embopt_tui.format import num


def front_table(row: Mapping[str, Any], limit: int | None = None) -> Table | None:
    """The front of ``row`` (a results.json row), best similarity first, the true sentence's scores beneath it;
    at most ``limit`` entries, spread along the front (its two ends kept). None when the row has no front."""
    front: Sequence[Mapping[str, Any]] = row.get("front") or []
    if not front:
        return None
    shown = list(front)
    if limit is not None and len(shown) > limit:
        shown = [shown[round(n * (len(shown) - 1) / max(1, limit - 1))] for n in range(max(1, limit))]
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, expand=True, padding=(0, 1), show_edge=False)
    table.add_column("sim", justify="right", style="cyan", no_wrap=True)
    table.add_column("nll", justify="right", style="cyan", no_wrap=True)
    table.add_column(f"front ({len(shown)} of {len(front)})" if len(shown) < len(front) else "front", ratio=1)
    chosen = row.get("text")
    for point in shown:
        mark = "bold magenta" if point.get("text") == chosen else ""
        table.add_row(num(point.get("sim")), num(point.get("nll"), 2), str(point.get("text")), style=mark)
    if row.get("oracle_sim") is not None:
        table.add_row(num(row.get("oracle_sim")), num(row.get("oracle_nll"), 2), "(the true sentence)", style="dim")
    return table
