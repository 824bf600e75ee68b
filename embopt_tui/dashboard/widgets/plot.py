"""Every experiment's similarity curve on one plotext plot, with the oracle line.

Each curve starts at step 0 with the init similarity, and the y axis spans
every init, every similarity and the oracle. The names are listed under the
plot in their curve's colour: plotext's own legend sits on top of the curves.
"""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual_plotext import PlotextPlot

from embopt_tui.dashboard.state import ExperimentView, RunState

# (plotext colour, the same colour for Rich)
COLORS = (
    ("cyan", "cyan"),
    ("magenta", "magenta"),
    ("yellow", "yellow"),
    ("blue", "blue"),
    ("red", "red"),
    ("white", "white"),
    ("orange", "dark_orange"),
    ("green+", "bright_green"),
)
MARGIN = 0.02  # of the y range, so no curve runs along the frame


class CurvesPlot(Vertical):
    DEFAULT_CSS = "CurvesPlot { height: 1fr; } CurvesPlot > #legend { height: auto; max-height: 4; }"

    y_range: tuple[float, float] | None = None  # the y axis as last drawn
    by_scorings = False  # x axis: steps (False) or exact scorings spent (True, the discrete methods)

    def compose(self) -> ComposeResult:
        yield PlotextPlot(id="plotext")
        yield Static(id="legend")

    def render_plot(self) -> Text:
        """The plot as drawn (tests)."""
        return self.query_one(PlotextPlot).render()  # type: ignore[return-value]

    def legend_text(self) -> str:
        return str(self.query_one("#legend", Static).render())

    def show(self, state: RunState) -> None:
        widget = self.query_one(PlotextPlot)
        plt = widget.plt
        plt.clear_data()
        plt.clear_figure()
        what = "Honest score per scorings" if self.by_scorings else "Mean similarity per step"
        plt.title(what)
        plt.xlabel("exact scorings" if self.by_scorings else "step")
        oracles: set[float] = set()
        values: list[float] = []
        legend = Text(no_wrap=False)
        for i, x in enumerate(state.experiments.values()):
            color, rich_color = COLORS[i % len(COLORS)]
            xs, curve = self._curve(x)
            if curve:
                plt.plot(xs, curve, color=color, marker="braille")
                values += curve
                legend.append("━━\u00a0", style=rich_color).append(x.name.replace(" ", "\u00a0") + "   ")
            if x.oracle_sim is not None:
                oracles.add(round(x.oracle_sim, 3))
                values.append(x.oracle_sim)
        for value in sorted(oracles):
            plt.hline(value, "green")
        if oracles:
            listed = ", ".join(f"{v:.3f}" for v in sorted(oracles))
            plt.title(f"{what} (oracle {listed} = green line)")
        if values:
            lo, hi = min(values), max(values)
            pad = (hi - lo) * MARGIN or 0.01
            self.y_range = (lo - pad, hi + pad)
            plt.ylim(*self.y_range)
        if self.by_scorings and not legend.plain:  # no curve: said in words, rather than an empty frame
            legend = Text(
                "No experiment has a search trace yet: the discrete methods (bank_search, bank_swap, token_swap) "
                "draw their honest score per scoring here. m switches back to similarity per step.",
                style="dim",
            )
        self.query_one("#legend", Static).update(legend)
        widget.refresh()

    def _curve(self, x: ExperimentView) -> tuple[list[float], list[float]]:
        """The points of one experiment: (step, similarity), or (scorings, best honest score) once it has a trace."""
        if self.by_scorings:
            trace = (x.result or {}).get("search_trace") or []
            return [float(p[0]) for p in trace], [float(p[1]) for p in trace]
        curve = ([x.init_sim] if x.init_sim is not None else []) + x.sims
        first = 0 if x.init_sim is not None else 1
        return [float(s) for s in range(first, first + len(curve))], curve
