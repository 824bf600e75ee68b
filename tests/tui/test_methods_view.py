"""The dashboard on the methods: the honest score beside the continuous one, the best text, bank progress, and
the plot of honest score against scorings spent."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_helpers import build, mini_installed, queue_toml, results_json, wait_until

pytestmark = pytest.mark.skipif(not mini_installed(), reason="the methods need the embedded default's corpus bank")

QUEUE = (
    {"name": "grad", "init": "I like cheese."},
    {"name": "search", "init": "I like cheese.", "method": "bank_search", "bank": "corpus"},
    {"name": "tokens", "init": "I like cheese.", "method": "token_swap", "steps": 4, "search_width": 8},
)


async def test_live_view_shows_the_honest_score_and_the_plot_switches_to_scorings(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("EMBOPT_CACHE_DIR", str(tmp_path / "cache"))
    config = tmp_path / "experiments.toml"
    config.write_text(queue_toml(QUEUE), encoding="utf-8")
    app = build(config, tmp_path)
    seen_bank: list[str] = []
    original = app._status_text

    def status() -> object:
        text = original()
        if "encoding bank" in text.plain:
            seen_bank.append(text.plain)
        return text

    app._status_text = status
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.state.finished is not None, "the queue to finish")
        await pilot.pause(0.3)
        saved = results_json(app.state.run_dir)
        rows = {r["name"]: r for r in saved["experiments"]}
        assert all(r["status"] == "done" for r in rows.values())
        await pilot.press("1")
        for name in ("grad", "search", "tokens"):
            app.queue.select(name, by_user=True)
            app._dirty = True
            await pilot.pause(0.3)
            live = "\n".join(line.plain for line in app.trace.lines(100))
            assert f"text {rows[name]['text_sim']:.3f}" in live, live  # beside "sim ...": the honest score
        assert "token_swap" in live and "search_width 8" in live  # the method's options in the details line
        decoded = app.query_one("#decoded").render().plain
        assert decoded  # the Decoded panel renders for a finished discrete method
        await pilot.press("m")
        await pilot.pause(0.5)
        plot = app.curves
        assert plot is not None and plot.by_scorings
        assert "exact scorings" in plot.render_plot().plain  # the x axis
        legend = plot.legend_text()
        assert "search" in legend and "tokens" in legend and "grad" not in legend  # only methods with a trace
    assert seen_bank, "the header showed the bank being encoded"
