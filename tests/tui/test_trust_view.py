"""The dashboard shows what happened, whole: the honest score at every size, a row's whole record, groups of
repeats, the best sentence unclipped, and a live edit never shown as if it had been applied (the real app, Pilot)."""

from __future__ import annotations

import pytest
from tui_helpers import build, notices, pause_at_step, queue_toml, table_rows, wait_until

from embopt_tui.dashboard.widgets.decoded import render_decoded
from embopt_tui.dashboard.widgets.screens import DetailsScreen

QUEUE = (
    {"name": "baseline", "init": "I like cheese.", "lr": 0.02},
    {"name": "story_init", "init": "There was a boy named Tom.", "lr": 0.02, "repeat": 2, "init_noise": 0.2},
)


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_the_results_keep_the_honest_score_and_pin_the_experiment_column(tmp_path, size):
    config = tmp_path / "experiments.toml"
    config.write_text(queue_toml(QUEUE, steps=8, decode_every=4), encoding="utf-8")
    app = build(config, tmp_path)
    async with app.run_test(size=size) as pilot:
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        table = app.table
        # once laid out: the Results tab takes the whole width (the queue gives way), the table fits it
        await wait_until(pilot, lambda: table.size.width == size[0] and table._width == size[0], "the layout")
        await pilot.pause()
        headers = [c.label.plain for c in table.ordered_columns]
        assert headers[0] == "Experiment" and table.fixed_columns == 1  # pinned while the rest scrolls
        assert "Text Sim" in headers and "Text" in headers and "Oracle" in headers, (
            headers,
            table.size,
            table_rows(app),
        )
        assert table.virtual_size.width <= table.size.width  # fitted: nothing to scroll for at this width
        rows = table_rows(app)
        starred = [r for r in rows if r[0].startswith("★")]
        assert len(starred) == 1 and starred[0][headers.index("Text Sim")] == max(
            r[headers.index("Text Sim")] for r in rows
        )  # the best real sentence wins the star

        # Enter: the row's whole record, its sentence unclipped.
        table.focus()
        table.move_cursor(row=0, column=0)
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, DetailsScreen)
        shown = app.screen.query_one("Static").render().plain
        row = app.state.experiments[rows[0][0].lstrip("★ ").strip()].result
        assert row["text"] in shown and "best sentence:" in shown and "oracle" in shown
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, DetailsScreen)

        # g: the repeats grouped, mean ± std and n.
        await pilot.press("g")
        await pilot.pause()
        grouped = {r[0]: r for r in table_rows(app)}
        assert [c.label.plain for c in table.ordered_columns][:2] == ["Experiment", "n"]
        assert grouped["story_init"][1] == "2" and grouped["baseline"][1] == "1"
        assert "±" in grouped["story_init"][2]
        for _ in range(3):  # method, objective, then back to one row per experiment
            await pilot.press("g")
        await pilot.pause()
        assert len(table_rows(app)) == 3


async def test_the_decoded_panel_wraps_the_whole_best_sentence(tmp_path):
    config = tmp_path / "experiments.toml"
    config.write_text(queue_toml(QUEUE[:1], steps=8, decode_every=4), encoding="utf-8")
    app = build(config, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        view = app.state.experiments["baseline"]
        text = render_decoded(view, 30).plain  # a narrow panel: the sentence wraps, it is not cut
        assert view.text in text.replace("\n", " ") or view.text in text


async def test_an_edit_of_the_running_experiment_is_refused_and_never_shown(tmp_path):
    config = tmp_path / "experiments.toml"
    config.write_text(queue_toml(QUEUE[:1], steps=30, decode_every=10), encoding="utf-8")
    app = build(config, tmp_path)
    paused = pause_at_step(app, 3)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: paused.is_set() and app.state.paused, "the pause at step 3")
        config.write_text(queue_toml([{**QUEUE[0], "lr": 0.1}], steps=30, decode_every=10), encoding="utf-8")
        app.action_reload()
        await wait_until(pilot, lambda: "cannot change" in notices(app), "the refusal")
        assert "baseline is running: its lr (0.02 -> 0.1) cannot change" in notices(app)
        assert "Queue updated" not in notices(app)
        assert "lr 0.02" in app.trace.lines(80)[-1].plain  # the Live tab shows what runs
        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
    assert "lr = 0.02" in (app.session.run_dir / "config.toml").read_text(encoding="utf-8")
    assert app.state.experiments["baseline"].result["lr"] == 0.02


async def test_skipping_a_batch_says_so_once(tmp_path):
    config = tmp_path / "experiments.toml"
    queue = [{"name": f"e{i}", "init": "I like cheese.", "lr": 0.01 * (i + 1)} for i in range(4)]
    config.write_text(queue_toml(queue, steps=50, decode_every=10), encoding="utf-8")
    app = build(config, tmp_path)
    paused = pause_at_step(app, 2)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: paused.is_set() and app.state.paused, "the pause at step 2")
        await pilot.press("S")
        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        await wait_until(pilot, lambda: any(n.title == "Skipped" for n in app._notifications), "the note")
        await pilot.pause(0.6)  # two more frames: no second note
        skipped = [n for n in app._notifications if n.title == "Skipped"]
        assert len(skipped) == 1 and all(f"e{i}" in skipped[0].message for i in range(4))


async def test_the_scorings_plot_says_why_it_is_empty(tmp_path):
    config = tmp_path / "experiments.toml"
    config.write_text(queue_toml(QUEUE[:1], steps=4, decode_every=4), encoding="utf-8")
    app = build(config, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        await pilot.press("m")
        await wait_until(pilot, lambda: app.curves is not None and app.curves.is_mounted, "the plot")
        await pilot.pause(0.3)
        assert "No experiment has a search trace yet" in app.curves.legend_text()
