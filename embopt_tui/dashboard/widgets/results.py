"""The comparison table: the columns and the fitting rule of every results table (engine.rundir.columns).

Every experiment has a row, running ones with their live similarity and
pending ones with their settings. The table fits its own width by the same
rule as ``report`` and the headless table, so the honest score is the last to
go; the Experiment column stays put when the rest scrolls. ``o`` sorts by the
column under the cursor, ``g`` groups the rows (experiment, method, objective:
mean ± std and n), Enter shows a row's whole record.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.binding import Binding
from textual.message import Message
from textual.widgets import DataTable

from embopt_tui.format import STATUS_GLYPHS, STATUS_STYLES
from engine import events as ev
from engine.rundir import report
from engine.rundir.columns import Column, choose, fit

GROUPINGS: tuple[str | None, ...] = (None, *report.GROUPINGS)  # g cycles through these


class ResultsTable(DataTable[Text]):
    """Every experiment's row (or, grouped, every group's); sortable, fitted to its width."""

    BINDINGS = [
        Binding("o", "sort_column", "Sort"),
        Binding("g", "cycle_grouping", "Group"),
        Binding("enter", "details", "Details"),
    ]

    class Details(Message):
        """Enter on an experiment's row: show its whole record."""

        def __init__(self, row: dict[str, Any]) -> None:
            super().__init__()
            self.row = row

    def __init__(self, **kwargs: object) -> None:
        super().__init__(cursor_type="cell", zebra_stripes=True, fixed_columns=1, **kwargs)  # type: ignore[arg-type]
        self.results: list[dict[str, Any]] = []
        self.best: frozenset[str] = frozenset()
        self.sort_field: str | None = None
        self.sort_reverse = False
        self.grouping: str | None = None
        self.columns_shown: list[Column] = []
        self.rows_shown: list[dict[str, Any]] = []
        self._shown: tuple[Any, ...] | None = None
        self._width = 0

    def on_mount(self) -> None:
        self._fill()

    def on_resize(self) -> None:  # what fits depends on this table's own width
        if self.size.width != self._width:
            self._width = self.size.width
            self._fill()

    def show(self, results: list[dict[str, Any]], best: frozenset[str]) -> None:
        key = (repr(results), best)
        if key == self._shown:
            return
        self._shown = key
        self.results, self.best = [dict(r) for r in results], best
        self._fill()

    def sort_by(self, field: str, reverse: bool | None = None) -> None:
        if reverse is None:
            reverse = not self.sort_reverse if field == self.sort_field else field not in ("name", "init_text")
        self.sort_field, self.sort_reverse = field, reverse
        self._fill()

    def action_sort_column(self) -> None:
        if self.grouping is None and self.columns_shown:
            shown = self.columns_shown
            self.sort_by(shown[max(0, min(self.cursor_column, len(shown) - 1))].field)

    def action_cycle_grouping(self) -> None:
        self.grouping = GROUPINGS[(GROUPINGS.index(self.grouping) + 1) % len(GROUPINGS)]
        self._fill()

    def action_details(self) -> None:
        if self.grouping is None and 0 <= self.cursor_row < len(self.rows_shown):
            self.post_message(self.Details(self.rows_shown[self.cursor_row]))

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        if self.grouping is None:
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
        column, row = self.cursor_column, self.cursor_row
        self.clear(columns=True)
        if self.grouping is not None:
            self._fill_groups()
        else:
            self._fill_rows()
        self.move_cursor(row=row, column=column, animate=False)

    def _fill_rows(self) -> None:
        rows = self.ordered()
        columns = choose(rows)
        table = [report.cells(columns, r) for r in rows]
        width = self.size.width - 2 if self.size.width else None  # the vertical scrollbar's room
        layout = fit(columns, table, width)
        self.columns_shown, self.rows_shown = layout.columns, rows
        for c in layout.columns:
            arrow = (" ▼" if self.sort_reverse else " ▲") if c.field == self.sort_field else ""
            self.add_column(Text(c.header + arrow, justify="right" if c.right else "left"), key=c.field)
        for row, row_cells in zip(rows, table):
            status = row.get("status") or ev.DONE
            is_best = row.get("name") in self.best
            mark = "★" if is_best else " " if status == ev.DONE else STATUS_GLYPHS.get(status, "?")
            style = "bold green" if is_best else "" if status == ev.DONE else STATUS_STYLES.get(status, "")
            cells = []
            for c, value in zip(layout.columns, layout.cells(row_cells)):
                shown = f"{mark} {value}" if c.header == "Experiment" else value
                cells.append(Text(shown, style=style, justify="right" if c.right else "left"))
            self.add_row(*cells)

    def _fill_groups(self) -> None:
        by = self.grouping
        assert by is not None
        run = report.Run("", {"experiments": self.results})
        records = report.groups([run], by)
        several = len({r["story"] for r in records}) > 1
        headers = (["Story"] if several else []) + [by.capitalize(), "n"] + [h for h, _ in report.GROUP_METRICS]
        self.columns_shown, self.rows_shown = [], []
        for header in headers:
            self.add_column(Text(header, justify="left" if header in ("Story", by.capitalize()) else "right"))
        for r in records:
            values = ([r["story"]] if several else []) + [r[by], str(r["n"])]
            values += [report.plus_minus(r[f"{f}_mean"], r[f"{f}_std"]) for _, f in report.GROUP_METRICS]
            self.add_row(*(Text(v, justify="left" if i < len(values) - 4 else "right") for i, v in enumerate(values)))
