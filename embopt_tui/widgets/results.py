"""The comparison table: the reference report's columns plus Oracle, Round-trip and Decoded z."""

from __future__ import annotations

from typing import Any, Callable

from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from engine.results import best_by_story

from embopt_tui.widgets.format import ellipsize, num


def _g(value: Any) -> str:
    return "—" if value is None else f"{value:g}"


# (header, results.json field, cell text, right-aligned)
COLUMNS: tuple[tuple[str, str, Callable[[Any], str], bool], ...] = (
    ("Experiment", "name", str, False),
    ("Init Text", "init_text", str, False),
    ("LR", "lr", _g, True),
    ("Steps", "steps", _g, True),
    ("Init Sim", "init_sim", num, True),
    ("Final Sim", "final_sim", num, True),
    ("Improvement", "improvement", lambda v: num(v, sign=True), True),
    ("Oracle", "oracle_sim", num, True),
    ("Round-trip", "roundtrip_sim", num, True),
    ("Decoded z", "decoded_z", str, False),
)
# Long text columns are clipped, more on narrow terminals, so the numbers stay in view.
CLIP = {"init_text": (16, 28), "decoded_z": (30, 48)}
FIELDS = tuple(c[1] for c in COLUMNS)


def best_of(results: list[dict[str, Any]]) -> frozenset[str]:
    """The best experiment of each story (the report's rule)."""
    return frozenset(best_by_story(results).values())


class ResultsTable(DataTable[Text]):
    """Finished experiments; `o` sorts by the column under the cursor (again: reverse)."""

    BINDINGS = [Binding("o", "sort_column", "Sort")]

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="column", zebra_stripes=True, **kwargs)  # type: ignore[arg-type]
        self.results: list[dict[str, Any]] = []
        self.best: frozenset[str] = frozenset()
        self.sort_field: str | None = None
        self.sort_reverse = False
        self.narrow = False
        self._shown: tuple[Any, ...] | None = None

    def on_mount(self) -> None:
        self._fill()

    def show(self, results: list[dict[str, Any]], best: frozenset[str]) -> None:
        key = (tuple((r.get("name"), r.get("status"), r.get("final_sim")) for r in results), best)
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
        self.sort_by(FIELDS[max(0, min(self.cursor_column, len(FIELDS) - 1))])

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
        for header, key, _, right in COLUMNS:
            arrow = (" ▼" if self.sort_reverse else " ▲") if key == self.sort_field else ""
            self.add_column(Text(header + arrow, justify="right" if right else "left"), key=key)
        for row in self.ordered():
            is_best = row.get("name") in self.best
            failed = row.get("status") not in (None, "done")
            cells = []
            for header, key, fmt, right in COLUMNS:
                text = fmt(row.get(key))
                if key in CLIP:
                    text = ellipsize(text if row.get(key) is not None else "", CLIP[key][0 if self.narrow else 1])
                if key == "name":
                    text = ("★ " if is_best else "✗ " if failed else "  ") + text
                    if failed:
                        text += f" ({row.get('status')})"
                style = "bold green" if is_best else "red" if failed and key == "name" else ""
                cells.append(Text(text, style=style, justify="right" if right else "left"))
            self.add_row(*cells)
        self.move_cursor(column=column, animate=False)
