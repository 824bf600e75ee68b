"""The fluency of what was found, on screen: Text NLL in the table, the Decoded panel's front, the details' front,
the front plot with the true sentence; the real dashboard on a real queue with a fluent_swap row."""

from __future__ import annotations

import io
import re

from tui_helpers import build, queue_toml, table_rows, wait_until

from embopt_tui.dashboard.widgets.decoded import render_decoded
from embopt_tui.dashboard.widgets.screens import DetailsScreen

QUEUE = (
    {"name": "grad", "init": "I like cheese.", "lr": 0.02},
    {
        "name": "fluent",
        "method": "fluent_swap",
        "init": "Once upon a time, there was a little girl named Mia.",
        "population": 3,
        "search_width": 6,
        "steps": 4,
    },
)


async def test_the_fluency_and_the_front_are_on_screen(tmp_path):
    config = tmp_path / "experiments.toml"
    config.write_text(queue_toml(QUEUE, steps=8, decode_every=4), encoding="utf-8")
    app = build(config, tmp_path)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        fluent = app.state.experiments["fluent"].result
        front = fluent["front"]
        assert len(front) >= 2

        # Results: Text NLL beside the honest score, each row's own number.
        headers = [c.label.plain for c in app.table.ordered_columns]
        rows = {r[0].strip("★ "): r for r in table_rows(app)}
        assert "Text NLL" in headers, headers  # (Oracle NLL comes when the width allows: report shows it)
        assert rows["fluent"][headers.index("Text NLL")] == f"{fluent['text_nll']:.3f}"
        grad = app.state.experiments["grad"].result
        assert rows["grad"][headers.index("Text NLL")] == f"{grad['text_nll']:.3f}"

        # Decoded: the text with its NLL, then the front, whole sentences.
        shown = _plain(render_decoded(app.state.experiments["fluent"], 100))
        assert front[0]["text"] in shown and f"{front[0]['sim']:.3f}" in shown
        assert "(the true sentence)" in shown and f"{fluent['oracle_sim']:.3f}" in shown

        # Enter on its row: every entry of the front.
        await pilot.press("2")
        app.table.move_cursor(row=list(rows).index("fluent"), column=0)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen)
        details = re.sub(r"\s+", " ", "\n".join(_plain(s.content) for s in app.screen.query("Static")))
        for point in front:  # whole, wrapped in its column
            assert f"{point['sim']:.3f} {point['nll']:.2f} {point['text']}" in details, details
        await pilot.press("escape")

        # Plot: m twice is the front view, the true sentence in its legend.
        await pilot.press("3", "m", "m")
        await wait_until(pilot, lambda: app.curves.view == "front", "the front view")
        await pilot.pause(0.3)
        legend = app.curves.legend_text().replace("\u00a0", " ")
        assert "● fluent" in legend and "O the true sentence (oracle)" in legend and "grad" not in legend


def _plain(renderable) -> str:
    from rich.console import Console

    console = Console(width=100, record=True, file=io.StringIO())
    console.print(renderable)
    return console.export_text()
