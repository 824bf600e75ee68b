"""One line under the status bar: the Ray workers, what each runs, which died. Hidden for inline runs."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from embopt_tui.cluster import Cluster


class WorkersLine(Static):
    DEFAULT_CSS = "WorkersLine { height: 1; padding: 0 1; }"

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.display = False
        self._last: str | None = None

    def show(self, cluster: Cluster) -> None:
        text = cluster.summary()
        if text == self._last:
            return
        self._last = text
        self.display = bool(text)
        self.update(Text.assemble(("Workers ", "bold"), (text, ""), no_wrap=True, overflow="ellipsis"))
