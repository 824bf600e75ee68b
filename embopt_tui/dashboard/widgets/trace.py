"""The live view of one experiment: similarity per step against its reference values."""

from __future__ import annotations

import dataclasses

from rich.text import Text
from textual.geometry import Size
from textual.widget import Widget

from embopt_tui.dashboard.state import ExperimentView
from embopt_tui.format import STATUS_STYLES, duration, num, spark_rows
from engine.methods import METHODS

CHART_ROWS = 3  # at 80x24; taller terminals give the chart more (up to MAX_CHART_ROWS)
MAX_CHART_ROWS = 16
TEXT_LINES = 4
AXIS_WIDTH = 7


def chart_rows(pane_height: int) -> int:
    """Chart height for a Live tab ``pane_height`` rows high: about half of it, the rest left to the decodes."""
    return max(CHART_ROWS, min(MAX_CHART_ROWS, pane_height // 2 - 2 * TEXT_LINES + 1))


def signature(x: ExperimentView | None) -> tuple[object, ...]:
    """Changes whenever anything this view draws changes."""
    if x is None:
        return ()
    return (
        x.name,
        x.status,
        x.step,
        x.total,
        len(x.sims),
        x.init_sim,
        x.oracle_sim,
        x.text_sim,
        x.experiment,
        x.result is None,
    )


class LiveView(Widget):
    """Step/total, speed and ETA, loss and norm, and a sparkline of the mean similarity."""

    BORDER_TITLE = "Live"
    DEFAULT_CSS = "LiveView { height: auto; }"

    def __init__(self, *, stable: bool = False, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.stable = stable  # hide speed and ETA so snapshots do not depend on timing
        self.view: ExperimentView | None = None
        self.paused = False
        self.chart_rows = CHART_ROWS
        self._shown: tuple[object, ...] | None = None

    def show(self, view: ExperimentView | None, paused: bool = False) -> None:
        self.view, self.paused = view, paused
        key = (signature(view), paused)
        if key != self._shown:
            self._shown = key
            self.refresh()

    def on_resize(self) -> None:
        self._shown = None

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        self.chart_rows = chart_rows(container.height)
        return TEXT_LINES + self.chart_rows

    def render(self) -> Text:
        width = max(20, self.size.width)
        lines = self.lines(width)
        for line in lines:
            line.truncate(width, overflow="ellipsis")
        return Text("\n").join(lines)

    def lines(self, width: int) -> list[Text]:
        x = self.view
        if x is None:
            return [Text("No experiment selected yet.", style="dim")]
        title = Text(x.name, style="bold")
        if x.status != "running":  # running is the usual case: leave the width to speed and ETA
            title.append(f"  {x.status}", style=STATUS_STYLES.get(x.status, ""))
        if x.total:
            title.append(f"  step {x.step}/{x.total}")
        if not self.stable and x.steps_per_s and x.status == "running":
            if self.paused:  # the clock stops with the engine: no speed or ETA meanwhile (and room at 80 columns)
                title.append("  ETA paused", style="yellow")
            else:
                title.append(f"  {x.steps_per_s:.1f}/s")
                if x.eta_s is not None:
                    title.append(f"  ETA {duration(x.eta_s)}")
        e = x.experiment
        label = "loss" if e is None or e.objective.label == "cosine" else f"{e.objective.label} loss"
        metrics = Text(f"{label} {num(x.loss, 4)}")
        if e is None or "norm" in METHODS[e.method].uses:  # the discrete methods have no z to project
            metrics.append(f"   norm {num(x.norm, 4)}")
        error = x.result.get("error") if x.result else None
        if error:
            metrics.append(f"   {error}", style="red")
        refs = Text.assemble(
            (f"sim {num(x.sim)}", "bold cyan"),
            (f"  text {num(x.text_sim)}", "bold magenta"),  # the honest score beside the continuous one
            (f"  oracle {num(x.oracle_sim)}", "green"),
            (f"  init {num(x.init_sim)}", "yellow"),
            f"  best {num(max(x.sims) if x.sims else None)}",
        )
        return [title, metrics, *self._chart(x, width), refs, Text(self._details(x), style="dim")]

    def _chart(self, x: ExperimentView, width: int) -> list[Text]:
        chart_width = max(1, width - AXIS_WIDTH)
        refs = [v for v in (x.init_sim, x.oracle_sim) if v is not None]
        values = x.sims
        rows = self.chart_rows
        if not values:
            return [Text("") for _ in range(rows)]
        lo, hi = min([*values, *refs]), max([*values, *refs])
        out = []
        for i, row in enumerate(spark_rows(values, chart_width, rows, lo, hi)):
            label = num(hi) if i == 0 else num(lo) if i == rows - 1 else ""
            out.append(Text.assemble((row.ljust(chart_width), "cyan"), (" " + label.rjust(AXIS_WIDTH - 1), "dim")))
        return out

    @staticmethod
    def _details(x: ExperimentView) -> str:
        e = x.experiment
        if e is None:
            return ""
        # the method's options that are not off (0, false): what makes this run different
        options = [f"{k} {v}" for k, v in dataclasses.asdict(e.options).items() if v not in (0, False)]
        if e.method == "gradient":
            parts = [
                f'"{e.init}"',
                f"lr {e.lr:g}",
                f"{e.steps} steps",
                e.optimizer,
                e.objective.label,
                f"norm {e.norm}",
            ]
        else:
            parts = [e.method, f'"{e.init}"', f"{e.steps} steps", e.objective.label]
        return " · ".join(parts + ([f"bank {e.bank}"] if e.bank else []) + options)
