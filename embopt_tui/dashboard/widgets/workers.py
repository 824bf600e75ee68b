"""One line under the status bar: the Ray workers, what each runs, which died. Hidden for inline runs."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from embopt_tui.cluster import summary
from engine.rundir.fold import Workers


class WorkersLine(Static):
    DEFAULT_CSS = "WorkersLine { height: 1; padding: 0 1; }"

    LABEL = "Workers "

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.display = False
        self._last: str | None = None
        self._workers: Workers | None = None

    def show(self, workers: Workers) -> None:
        self._workers = workers
        room = self.content_size.width - len(self.LABEL) if self.content_size.width else None
        text = summary(workers, room)
        if text == self._last:
            return
        self._last = text
        self.display = bool(text)
        self.update(Text.assemble((self.LABEL, "bold"), (text, ""), no_wrap=True, overflow="ellipsis"))

    def on_resize(self) -> None:  # what fits depends on this line's own width (see STYLE.md, "Learned here")
        if self._workers is not None:
            self.show(self._workers)
