"""Every experiment's similarity curve on one plotext plot, with the oracle line.

Each curve starts at step 0 with the init similarity, and the y axis spans
every init, every similarity and the oracle. The names are listed under the
plot in their curve's colour: plotext's own legend sits on top of the curves.
"""

from __future__ import annotations

from typing import Any

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


VIEWS = ("steps", "scorings", "front")  # m cycles through them
EMPTY = {
    "scorings": "No experiment has a search trace yet: the discrete methods (bank_search, bank_swap, token_swap, "
    "fluent_swap) draw their honest score per scoring here.",
    "front": "No front yet: fluent_swap draws here the sentences no other beats on both similarity and fluency "
    "(NLL per token; the oracle is the true sentence).",
}


class CurvesPlot(Vertical):
    DEFAULT_CSS = "CurvesPlot { height: 1fr; } CurvesPlot > #legend { height: auto; max-height: 4; }"

    y_range: tuple[float, float] | None = None  # the y axis as last drawn
    view = "steps"  # similarity per step, honest score per exact scoring, or the fronts (similarity against NLL)

    @property
    def by_scorings(self) -> bool:
        return self.view == "scorings"

    def next_view(self) -> None:
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]

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
        legend = self._front(plt, state) if self.view == "front" else self._curves(plt, state)
        if self.view in EMPTY and not legend.plain:  # nothing drawn: said in words, rather than an empty frame
            legend = Text(EMPTY[self.view] + " m: the next view.", style="dim")
        self.query_one("#legend", Static).update(legend)
        widget.refresh()

    def _curves(self, plt: Any, state: RunState) -> Text:
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
        return legend

    def _front(self, plt: Any, state: RunState) -> Text:
        """Each fluent_swap row's front: similarity against NLL per token, and the true sentence (the oracle)."""
        plt.title("Front: similarity in z's place against NLL per token")
        plt.xlabel("NLL per token (lower reads better)")
        legend = Text(no_wrap=False)
        oracles: set[tuple[float, float]] = set()
        for i, x in enumerate(state.experiments.values()):
            front = (x.result or {}).get("front") or []
            if not front:
                continue
            color, rich_color = COLORS[i % len(COLORS)]
            plt.scatter([p["nll"] for p in front], [p["sim"] for p in front], color=color, marker="●")
            legend.append("●\u00a0", style=rich_color).append(x.name.replace(" ", "\u00a0") + "   ")
            oracle_nll = (x.result or {}).get("oracle_nll")
            if oracle_nll is not None and x.oracle_sim is not None:
                oracles.add((round(oracle_nll, 3), round(x.oracle_sim, 3)))
        for nll, sim in sorted(oracles):
            plt.scatter([nll], [sim], color="green", marker="O")
            plt.hline(sim, "green")
        if oracles:
            legend.append("O\u00a0the\u00a0true\u00a0sentence\u00a0(oracle)", style="green")
        return legend

    def _curve(self, x: ExperimentView) -> tuple[list[float], list[float]]:
        """The points of one experiment: (step, similarity), or (scorings, best honest score) once it has a trace."""
        if self.by_scorings:
            trace = (x.result or {}).get("search_trace") or []
            return [float(p[0]) for p in trace], [float(p[1]) for p in trace]
        curve = ([x.init_sim] if x.init_sim is not None else []) + x.sims
        first = 0 if x.init_sim is not None else 1
        return [float(s) for s in range(first, first + len(curve))], curve
