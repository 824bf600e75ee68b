"""Pilot drives the real dashboard, with the real engine in its thread, on a small queue."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest
from tui_helpers import (
    LILY,
    SMALL_QUEUE,
    build,
    notices,
    pause_at_step,
    queue_toml,
    results_json,
    stop_engine,
    table_rows,
    two_batch_queue,
    wait_until,
)

from embopt_tui.dashboard.app import make_app
from embopt_tui.dashboard.widgets.results import ResultsTable
from embopt_tui.dashboard.widgets.screens import ConfirmQuit, HelpScreen
from engine import events as ev
from engine.rundir import report
from engine.spec import SpecError, load_spec

NAMES = [e["name"] for e in SMALL_QUEUE]


async def test_queue_runs_to_the_finished_table_with_the_best_marked(small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        await pilot.pause()
        assert app.engine_code == 0 and app.engine_error is None
        assert [x.status for x in app.state.experiments.values()] == [ev.DONE] * 3
        saved = results_json(app.session.run_dir)
        assert saved["status"] == "done"

        # The comparison table: one row per experiment, the saved best marked, the report's columns.
        assert app.query_one("#tabs").active == "results"
        rows = table_rows(app)
        assert sorted(r[0].lstrip("★ ").strip() for r in rows) == sorted(NAMES)
        marked = [r[0] for r in rows if r[0].startswith("★")]
        assert marked == [f"★ {name}" for name in saved["best"].values()]
        headers = [c.label.plain for c in app.query_one("#table", ResultsTable).ordered_columns]
        assert headers[0] == "Experiment" and {"Final Sim", "Oracle", "Text Sim", "Text"} <= set(headers)
        best_row = next(r for r in saved["experiments"] if r["best"])  # best by the honest score
        assert f"{best_row['text_sim']:.3f}" in next(r for r in rows if r[0].startswith("★"))
        assert best_row["text_sim"] == max(r["text_sim"] for r in saved["experiments"])

        # Sorting by a column from the keyboard: Final Sim, descending, then reversed.
        table = app.query_one("#table", ResultsTable)
        table.focus()
        at = headers.index("Final Sim")
        table.move_cursor(column=at)
        await pilot.press("o")
        finals = [float(r[at]) for r in table_rows(app)]
        assert finals == sorted(finals, reverse=True)
        await pilot.press("o")
        assert [float(r[at]) for r in table_rows(app)] == sorted(finals)

        # Done is announced (bell + notification) with the run directory, and the Plot tab draws.
        assert "Queue finished" in notices(app)
        await pilot.press("3")
        await wait_until(pilot, lambda: app.curves is not None and app.curves.is_mounted, "the plot")
        await pilot.pause(0.3)
        assert app.query_one("#tabs").active == "plot"
        plot = app.curves.render_plot().plain
        assert "Mean similarity per step (oracle" in plot
        # The names are listed under the plot, not in a legend drawn over the curves.
        assert "baseline" not in plot and all(name in app.curves.legend_text() for name in NAMES)
        # The y axis spans every init similarity and the oracle (each curve starts at its init, step 0).
        lo, hi = app.curves.y_range
        for x in app.state.experiments.values():
            assert lo <= x.init_sim <= hi and lo <= x.oracle_sim <= hi and lo <= min(x.sims)
        await pilot.press("q")  # finished: quits without asking
    assert app.return_code == 0


async def test_live_view_and_decodes_follow_the_running_experiment(small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    paused = pause_at_step(app, 8)  # decode_every = 4: decodes at 4 and 8 exist
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, paused.is_set, "the engine to pause at step 8")
        await wait_until(pilot, lambda: app.state.paused, "the Paused event to reach the UI")
        await pilot.pause(0.2)
        shown = app.query_one("#trace").view
        assert shown is not None and shown.name == "baseline" and shown.status == ev.RUNNING
        assert shown.step == 8 and len(shown.sims) == 8 and shown.total == 12
        assert shown.init_sim is not None and shown.oracle_sim is not None
        trace = app.query_one("#trace").render().plain
        assert "step 8/12" in trace and "oracle" in trace and "init" in trace
        decoded = app.query_one("#decoded").render().plain
        assert "z @ 8:" in decoded and "target" in decoded and LILY[1][:20] in decoded
        assert [step for step, _ in shown.z_history][0] in (0, 4)  # history starts at the first decode

        # Selecting another experiment shows its details instead.
        await pilot.press("down")
        await pilot.pause(0.2)
        assert app.query_one("#trace").view.name == "higher_lr"
        assert '"I like cheese." · lr 0.05' in app.query_one("#trace").render().plain
        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
    assert results_json(app.session.run_dir)["status"] == "done"


async def test_pause_holds_the_engine_and_resume_finishes(small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: any(x.sims for x in app.state.experiments.values()), "a first step")
        await pilot.press("p")
        await wait_until(pilot, lambda: app.steering.paused and app.state.paused, "the pause")
        await wait_until(pilot, lambda: not app.bridge._events and app.state.paused, "queued events to drain")
        await pilot.pause(0.3)
        steps = {x.name: x.step for x in app.state.experiments.values()}
        await pilot.pause(0.5)
        assert {x.name: x.step for x in app.state.experiments.values()} == steps  # nothing moved while paused
        assert "PAUSED" in app.query_one("#status").render().plain
        await pilot.press("p")
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish after resume")
        assert app.engine_code == 0
    events = (app.session.run_dir / "events.jsonl").read_text(encoding="utf-8")
    assert '"type":"paused","time"' in events and '"paused":true' in events and '"paused":false' in events


async def test_shift_s_skips_the_running_batch_and_the_queue_goes_on(tmp_path):
    config = two_batch_queue(tmp_path)
    app = build(config, tmp_path)
    paused = pause_at_step(app, 3)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, paused.is_set, "the pause at step 3")
        await pilot.press("S")  # shift+s: the whole running batch
        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        await pilot.pause()
        assert "done 1/2 · 1 skipped" in app.query_one("#status").render().plain
    saved = {r["name"]: r for r in results_json(app.session.run_dir)["experiments"]}
    assert saved["first"]["status"] == ev.SKIPPED
    assert saved["later"]["status"] == ev.DONE


async def test_quit_while_running_asks_then_saves_interrupted_and_exits_130(small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    paused = pause_at_step(app, 5)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, paused.is_set, "the pause at step 5")
        await pilot.press("q")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("n")  # changed their mind: nothing stops
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmQuit) and not app.steering.stop_requested
        await pilot.press("q")
        await pilot.press("y")
        await wait_until(pilot, lambda: app.engine_code is not None, "the engine to save and stop")
    assert app.return_code == 130
    saved = results_json(app.session.run_dir)
    assert saved["status"] == ev.INTERRUPTED
    baseline = next(r for r in saved["experiments"] if r["name"] == "baseline")
    assert baseline["status"] == ev.INTERRUPTED and baseline["steps_done"] == 5


async def test_export_writes_csv_json_and_markdown_with_the_report_code(small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        await pilot.press("e")
        await pilot.pause()
        run_dir = app.session.run_dir
        assert "Exported" in notices(app)
        await pilot.press("d")
        await pilot.pause()
        assert "Run directory" in notices(app)
    run = report.load_run(run_dir)
    assert (run_dir / "export.csv").read_text(encoding="utf-8") == report.render([run], "csv")
    assert (run_dir / "export.md").read_text(encoding="utf-8") == report.render([run], "markdown")
    assert json.loads((run_dir / "export.json").read_text(encoding="utf-8")) == results_json(run_dir)


async def test_live_edits_apply_to_pending_and_invalid_ones_are_shown(tmp_path):
    config = tmp_path / "experiments.toml"
    config.write_text(queue_toml(SMALL_QUEUE[:2]), encoding="utf-8")
    app = build(config, tmp_path)
    paused = pause_at_step(app, 3)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, paused.is_set, "the pause at step 3")

        # An invalid save: the one-line --check error in a notification; the queue keeps its config.
        config.write_text(queue_toml(SMALL_QUEUE[:2]) + '\n[[experiments]]\nname = "bad"\ninit = "x"\nlr = -1\n')
        bump(config)
        await wait_until(pilot, lambda: "Config not applied" in notices(app), "the error notification")
        with pytest.raises(SpecError) as check_error:  # what `embopt-tui --check` prints
            load_spec(config)
        assert str(check_error.value) in notices(app) and "lr" in str(check_error.value)

        # A valid save adds an experiment: it joins the queue and runs after the current batch.
        added = {"name": "added_live", "init": "Lily had a red ball.", "lr": 0.03, "steps": 6}
        config.write_text(queue_toml([*SMALL_QUEUE[:2], added]), encoding="utf-8")
        bump(config)
        await wait_until(pilot, lambda: "Queue updated" in notices(app), "the reload notification")
        app.steering.resume()
        await wait_until(pilot, lambda: "added_live" in app.state.experiments, "the new experiment in the queue")
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        assert [x.status for x in app.state.experiments.values()] == [ev.DONE] * 3
    saved = {r["name"]: r for r in results_json(app.session.run_dir)["experiments"]}
    assert saved["added_live"]["status"] == ev.DONE and saved["added_live"]["steps_done"] == 6
    assert "bad" not in saved
    events = (app.session.run_dir / "events.jsonl").read_text(encoding="utf-8")
    assert '"type":"config_rejected"' in events


def bump(path: Path) -> None:
    """Make the save visible to the mtime poll even within the file system's timestamp granularity."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


async def test_help_screen_and_command_palette_list_the_keys(small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    app.engine_gate = threading.Event()  # keep the engine waiting: this test is about the UI
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("question_mark")
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            text = app.screen.query_one("Static").render()
            plain = str(text.plain if hasattr(text, "plain") else text)
            for key in ("p", "s", "r", "e", "d", "q"):
                assert f"  {key} " in plain
            await pilot.press("escape")
            await pilot.pause()
            assert not isinstance(app.screen, HelpScreen)
            titles = [c.title for c in app.get_system_commands(app.screen)]
            for title in (
                "Pause / resume",
                "Skip experiment",
                "Reload experiments.toml",
                "Export results",
                "Show run directory",
                "Quit",
            ):
                assert title in titles
            footer_keys = {b.key for b in app.BINDINGS if getattr(b, "show", True)}
            assert {"p", "s", "r", "e", "d", "q", "question_mark"} <= footer_keys
    finally:
        stop_engine(app)


async def test_a_model_load_failure_is_shown_not_a_traceback(tmp_path):
    config = tmp_path / "experiments.toml"
    missing_card = 'kind = "mini"\nencoder = "no_such_encoder_card"\n'
    text = queue_toml(SMALL_QUEUE[:1]).replace('kind = "mini"\n', missing_card, 1)
    config.write_text(text, encoding="utf-8")
    app = build(config, tmp_path)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: app.engine_code is not None, "the engine to give up")
        await pilot.pause()
        status = app.query_one("#status").render()
        assert "model load failed" in str(status)
        assert "Model load failed" in notices(app) and "Traceback" not in notices(app)
        assert app.engine_error is None  # reported by the engine as an event, not raised
        await pilot.press("q")
    assert app.return_code == 1
    saved = results_json(app.session.run_dir)
    assert saved["status"] == "failed" and "no_such_encoder_card" in saved["error"]
    assert saved["experiments"][0]["status"] == ev.PENDING  # nothing ran: --resume runs it once the card exists


async def test_resume_in_the_dashboard_keeps_finished_results_and_completes_the_run(tmp_path):
    config = two_batch_queue(tmp_path, steps=6)
    first = build(config, tmp_path)
    stopped = threading.Event()

    def stop_in_later(event: ev.Event) -> None:  # engine thread: stop exactly after step 3 of the second batch
        if isinstance(event, ev.Step) and event.name == "later" and event.step == 3 and not stopped.is_set():
            stopped.set()
            first.steering.request_stop()

    first.event_tap = stop_in_later
    async with first.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: first.engine_code is not None, "the interrupted run to save")
        await pilot.press("q")
    assert first.engine_code == 130
    run_dir = first.session.run_dir
    statuses = {r["name"]: r["status"] for r in results_json(run_dir)["experiments"]}
    assert statuses == {"first": "done", "later": "interrupted"}

    app = make_app(None, resume=run_dir, stable=True)
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.state.experiments["first"].status == ev.DONE  # shown from the run directory at once
        await wait_until(pilot, lambda: app.engine_code is not None, "the resumed run to finish")
        assert app.engine_code == 0
        assert [x.status for x in app.state.experiments.values()] == [ev.DONE] * 2
        assert sorted(r[0].lstrip("★ ").strip() for r in table_rows(app)) == ["first", "later"]
        await pilot.press("q")
    saved = results_json(run_dir)
    assert saved["status"] == ev.DONE and all(r["status"] == ev.DONE for r in saved["experiments"])


async def test_the_live_view_moves_on_when_the_followed_experiment_finishes(tmp_path):
    config = tmp_path / "experiments.toml"
    queue = [
        {"name": "short", "init": "I like cheese.", "steps": 4},
        {"name": "long", "init": "I like cheese.", "lr": 0.05},
    ]
    config.write_text(queue_toml(queue), encoding="utf-8")
    app = build(config, tmp_path)
    paused = pause_at_step(app, 6)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: paused.is_set() and app.state.paused, "the pause at step 6")
        await pilot.pause(0.3)
        assert app.state.experiments["short"].status == ev.DONE
        assert app.query_one("#trace").view.name == "long"
        await pilot.press("up")  # the user looks at the finished one: it stays shown
        await pilot.pause(0.3)
        assert app.query_one("#trace").view.name == "short"
        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        assert app.query_one("#trace").view.name == "short"


async def test_resizing_while_running_keeps_every_panel(small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    paused = pause_at_step(app, 6)
    async with app.run_test(size=(120, 40)) as pilot:
        await wait_until(pilot, paused.is_set, "the pause at step 6")
        await pilot.pause(0.2)
        assert app.queue.outer_size.width == 42
        for width, height in ((80, 24), (100, 30), (80, 24)):
            await pilot.resize_terminal(width, height)
            await pilot.pause(0.3)
            assert app.queue.outer_size.width == (34 if width < 100 else 42)
            assert app.trace.size.height >= 7 and app.decoded.size.height >= 3
            assert "step 6/12" in app.trace.render().plain
        await pilot.press("2")  # below 100 columns the table takes the whole width
        await pilot.pause(0.2)
        assert not app.queue.display and app.table.outer_size.width >= 78
        await pilot.press("1")
        await pilot.pause(0.2)
        assert app.queue.display
        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
