"""The comparison table: the reference report's columns plus Oracle, Round-trip and Decoded z.

Every experiment has a row, running ones with their live similarity and
pending ones with their settings; the config columns that differ between
rows (Story, Objective, Optimizer, Norm) are shown, the others hidden.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from embopt_tui.format import STATUS_GLYPHS, STATUS_STYLES, ellipsize, num
from engine import events as ev


def _g(value: Any) -> str:
    return "—" if value is None else f"{value:g}"


def _text(value: Any) -> str:
    return "—" if value is None else str(value)


Column = tuple[str, str, Callable[[Any], str], bool]  # (header, results.json field, cell text, right-aligned)
# Shown only when the rows do not all have the same value.
VARYING: tuple[Column, ...] = (
    ("Story", "story", _text, False),
    ("Objective", "objective", _text, False),
    ("Optimizer", "optimizer", _text, False),
    ("Norm", "norm", lambda v: _g(v) if isinstance(v, (int, float)) else _text(v), False),
    ("Method", "method", _text, False),
)
COLUMNS: tuple[Column, ...] = (
    ("Experiment", "name", str, False),
    ("Init Text", "init_text", str, False),
    ("LR", "lr", _g, True),
    ("Steps", "steps", _g, True),
    ("Init Sim", "init_sim", num, True),
    ("Final Sim", "final_sim", num, True),
    ("Improvement", "improvement", lambda v: num(v, sign=True), True),
    ("Oracle", "oracle_sim", num, True),
    ("Round-trip", "roundtrip_sim", num, True),
    ("Text Sim", "text_sim", num, True),
    ("Text", "text", str, False),
    ("Decoded z", "decoded_z", str, False),
)
# Long text columns are clipped, more on narrow terminals, so the numbers stay in view.
SHOWN_FIELDS = COLUMNS + VARYING
SAID = (ev.FAILED, ev.SKIPPED, ev.INTERRUPTED)
CLIP = {"init_text": (16, 28), "text": (24, 40), "decoded_z": (30, 48)}


def columns(rows: list[dict[str, Any]], always: tuple[Column, ...] = COLUMNS) -> tuple[Column, ...]:
    """The always-shown columns with, after Improvement, the config columns whose value differs between rows.

    After Improvement, so that at 80 columns the reference report's numbers stay in view.
    """
    differing = tuple(c for c in VARYING if len({repr(r.get(c[1])) for r in rows}) > 1)
    at = next(i for i, c in enumerate(always) if c[1] == "improvement") + 1
    return always[:at] + differing + always[at:]


class ResultsTable(DataTable[Text]):
    """Every experiment's row; `o` sorts by the column under the cursor (again: reverse)."""

    BINDINGS = [Binding("o", "sort_column", "Sort")]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="column", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.results: list[dict[str, Any]] = []
        self.best: frozenset[str] = frozenset()
        self.sort_field: str | None = None
        self.sort_reverse = False
        self.narrow = False
        self.columns_shown: tuple[Column, ...] = COLUMNS
        self._shown: tuple[Any, ...] | None = None

    def on_mount(self) -> None:
        self._fill()

    def show(self, results: list[dict[str, Any]], best: frozenset[str]) -> None:
        key = (tuple(tuple(repr(r.get(c[1])) for c in SHOWN_FIELDS) + (r.get("status"),) for r in results), best)
        if key == self._shown:
            return
        self._shown = key
        self.results, self.best = [dict(r) for r in results], best
        self._fill()

    def set_narrow(self, narrow: bool) -> None:
        if narrow != self.narrow:
            self.narrow = narrow
            self._fill()

    def sort_by(self, field: str, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = not self.sort_reverse if field == self.sort_field else field != "name" and field != "init_text"
        self.sort_field, self.sort_reverse = field, reverse
        self._fill()

    def action_sort_column(self) -> None:
        shown = self.columns_shown
        self.sort_by(shown[max(0, min(self.cursor_column, len(shown) - 1))][1])

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(str(event.column_key.value))

    def ordered(self) -> list[dict[str, Any]]:
        rows = list(self.results)
        field = self.sort_field
        if field is None:
            return rows
        present = [r for r in rows if r.get(field) is not None]
        missing = [r for r in rows if r.get(field) is None]
        present.sort(key=lambda r: r[field].lower() if isinstance(r[field], str) else r[field])
        if self.sort_reverse:
            present.reverse()
        return present + missing

    def _fill(self) -> None:
        column = self.cursor_column
        self.clear(columns=True)
        self.columns_shown = shown = columns(self.results)
        for header, key, _, right in shown:
            arrow = (" ▼" if self.sort_reverse else " ▲") if key == self.sort_field else ""
            self.add_column(Text(header + arrow, justify="right" if right else "left"), key=key)
        for row in self.ordered():
            status = row.get("status") or ev.DONE
            is_best = row.get("name") in self.best
            mark = "★" if is_best else " " if status == ev.DONE else STATUS_GLYPHS.get(status, "?")
            cells = []
            for _header, key, fmt, right in shown:
                text = fmt(row.get(key))
                if key in CLIP:
                    text = ellipsize(text if row.get(key) is not None else "", CLIP[key][0 if self.narrow else 1])
                style = "bold green" if is_best else ""
                if key == "name":
                    # Ended otherwise than done: said in words too; running and pending have their mark only.
                    text = f"{mark} {text}" + (f" ({status})" if status in SAID else "")
                    if not is_best and status != ev.DONE:
                        style = STATUS_STYLES.get(status, "")
                cells.append(Text(text, style=style, justify="right" if right else "left"))
            self.add_row(*cells)
        self.move_cursor(column=column, animate=False)
