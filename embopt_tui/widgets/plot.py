"""Every experiment's similarity curve on one plotext plot, with the oracle line."""

from __future__ import annotations

from textual_plotext import PlotextPlot

from embopt_tui.state import RunState

COLORS = ("cyan", "magenta", "yellow", "blue", "red", "white", "orange", "green+")


class CurvesPlot(PlotextPlot):
    def show(self, state: RunState) -> None:
        plt = self.plt
        plt.clear_data()
        plt.clear_figure()
        plt.title("Mean similarity per step")
        plt.xlabel("step")
        oracles: set[float] = set()
        for i, x in enumerate(state.experiments.values()):
            if x.sims:
                steps = list(range(1, len(x.sims) + 1))
                plt.plot(steps, x.sims, label=x.name, color=COLORS[i % len(COLORS)], marker="braille")
            if x.oracle_sim is not None:
                oracles.add(round(x.oracle_sim, 3))
        for value in sorted(oracles):
            plt.hline(value, "green")
        if oracles:
            values = ", ".join(f"{v:.3f}" for v in sorted(oracles))
            plt.title(f"Mean similarity per step (oracle {values} = green line)")
        self.refresh()
