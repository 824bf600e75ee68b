"""The queue panel: every experiment, its status, similarity and trend.

A small hand-drawn list rather than a DataTable: it repaints on every frame
while steps arrive, and a DataTable repaint costs the engine thread several
times more GIL time than these few lines of text.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.binding import Binding
from textual.message import Message
from textual.widget import Widget

from embopt_tui.dashboard.state import ExperimentView, RunState
from embopt_tui.format import STATUS_GLYPHS, STATUS_STYLES, ellipsize, num, spark

SIM_WIDTH = 6
TREND_WIDTH = 7


class QueuePanel(Widget, can_focus=True):
    """One line per experiment; the highlighted one is shown in detail on the Live tab."""

    BORDER_TITLE = "Queue"
    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("home", "move(-1000000)", "First", show=False),
        Binding("end", "move(1000000)", "Last", show=False),
        Binding("pageup", "move(-10)", "Page up", show=False),
        Binding("pagedown", "move(10)", "Page down", show=False),
    ]

    class Highlighted(Message):
        def __init__(self, name: str, by_user: bool) -> None:
            super().__init__()
            self.name = name
            self.by_user = by_user  # False when the app moved the cursor to follow the engine

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.names: tuple[str, ...] = ()
        self.cursor = 0
        self._top = 0
        self._lines: list[Text] = []
        self._wanted: str | None = None  # selected before its row existed
        self._state: RunState | None = None
        self._best: frozenset[str] = frozenset()

    def show(self, state: RunState, best: frozenset[str] = frozenset()) -> None:
        self._state, self._best = state, best
        selected = self.selected_name()
        self.names = tuple(state.experiments)
        if self._wanted in self.names:
            selected, self._wanted = self._wanted, None
        if selected in self.names:
            self.cursor = self.names.index(selected)
        self.cursor = max(0, min(self.cursor, len(self.names) - 1))
        width = self.name_width()
        lines = [self._line(state.experiments[n], best, width) for n in self.names]
        if lines != self._lines:
            self._lines = lines
            self.refresh()

    def name_width(self) -> int:
        return max(8, self.size.width - 3 - SIM_WIDTH - TREND_WIDTH)  # glyph (2) and a margin (1)

    @staticmethod
    def _line(x: ExperimentView, best: frozenset[str], width: int) -> Text:
        style = STATUS_STYLES.get(x.status, "")
        mark = "★" if x.name in best else STATUS_GLYPHS.get(x.status, "?")
        return Text.assemble(
            (mark + " ", style),
            (ellipsize(x.name, width).ljust(width), style),
            num(x.sim).rjust(SIM_WIDTH),
            (" " + spark(x.sims, TREND_WIDTH - 1), "cyan" if x.status == "running" else ""),
        )

    def render(self) -> Text:
        width = self.name_width()
        header = Text.assemble(("  " + "Experiment".ljust(width) + "Sim".rjust(SIM_WIDTH) + " Trend", "bold"))
        rows = max(1, self.size.height - 1)
        if self.cursor < self._top:
            self._top = self.cursor
        elif self.cursor >= self._top + rows:
            self._top = self.cursor - rows + 1
        out = [header]
        for i in range(self._top, min(len(self._lines), self._top + rows)):
            line = self._lines[i].copy()
            if i == self.cursor:
                line.stylize("reverse" if self.has_focus else "underline")
            out.append(line)
        return Text("\n").join(out)

    def on_resize(self) -> None:
        # The names are padded or clipped to the width: rebuild them now, not on the app's next frame,
        # which may not come before the screen is drawn (the first frame is built before any layout).
        if self._state is not None:
            self.show(self._state, self._best)

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()

    def action_move(self, delta: int) -> None:
        if self.names:
            self.select(self.names[max(0, min(len(self.names) - 1, self.cursor + delta))], by_user=True)

    def on_click(self, event: events.Click) -> None:
        index = self._top + event.y - 1
        if 0 <= index < len(self.names):
            self.select(self.names[index], by_user=True)

    def selected_name(self) -> str | None:
        return self.names[self.cursor] if 0 <= self.cursor < len(self.names) else None

    def select(self, name: str, by_user: bool = False) -> None:
        if name not in self.names:
            self._wanted = name
        else:
            self.cursor = self.names.index(name)
            self.refresh()
            self.post_message(self.Highlighted(name, by_user))
