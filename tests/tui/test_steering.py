"""Steering a running queue from the dashboard: skip one experiment, the quit dialog's keys, pausing."""

from __future__ import annotations

import threading

import pytest
from tui_helpers import build, notices, pause_at_step, results_json, table_rows, two_batch_queue, wait_until

from embopt_tui.dashboard.app import EmboptApp
from embopt_tui.dashboard.widgets.screens import ConfirmQuit
from embopt_tui.format import duration
from engine import events as ev


def pause_at_steps(app: EmboptApp, name: str, steps: tuple[int, ...]) -> list[threading.Event]:
    """Pause the engine (in its thread) right after ``name`` emits each of ``steps``; one event per pause."""
    reached = [threading.Event() for _ in steps]

    def tap(event: ev.Event) -> None:
        if isinstance(event, ev.Step) and event.name == name and event.step in steps:
            app.steering.pause()
            reached[steps.index(event.step)].set()

    app.event_tap = tap
    return reached


def queue_line(app: EmboptApp, name: str) -> str:
    return next(line.plain for line in app.queue._lines if f" {name} " in line.plain + " ")


async def test_s_skips_the_experiment_selected_in_the_queue_and_skipped_is_its_own_status(small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    first, second = pause_at_steps(app, "baseline", (3, 6))
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: first.is_set() and app.state.paused, "the pause at step 3")
        await pilot.press("down")  # the queue runs as one batch: choose higher_lr, not the one shown first
        await pilot.pause()
        assert app.queue.selected_name() == "higher_lr"
        await pilot.press("s")
        assert "Skipping higher_lr (running)" in notices(app)
        app.steering.resume()
        await wait_until(pilot, lambda: second.is_set() and app.state.paused, "the pause at step 6")
        await wait_until(pilot, lambda: app.state.experiments["higher_lr"].status == ev.SKIPPED, "the skip")
        # Only the selected one ended; the rest of the batch goes on.
        assert app.state.experiments["baseline"].status == ev.RUNNING
        assert app.state.experiments["story_init"].status == ev.RUNNING
        await wait_until(pilot, lambda: "higher_lr: saved as skipped" in notices(app), "the note")
        await pilot.press("s")  # a finished one cannot be skipped
        assert "higher_lr is skipped" in notices(app)
        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        await pilot.pause()

        status = app.query_one("#status").render().plain
        assert "done 2/3 · 1 skipped" in status and "3/3" not in status
        skipped_row = next(r for r in table_rows(app) if "higher_lr" in r[0])  # the Results tab, shown at the end
        await pilot.press("1")  # the queue beside the Live tab
        await pilot.pause()
        assert queue_line(app, "higher_lr").startswith("» ")
        headers = [c.label.plain for c in app.table.ordered_columns]
        assert skipped_row[0].startswith("» ") and "✗" not in skipped_row[0]
        assert skipped_row[headers.index("Status")] == "skipped"
        assert "1 skipped" in notices(app)  # the end-of-queue notification
        await pilot.press("s")
        assert "not running" in notices(app)
    saved = {r["name"]: r["status"] for r in results_json(app.session.run_dir)["experiments"]}
    assert saved == {"baseline": ev.DONE, "higher_lr": ev.SKIPPED, "story_init": ev.DONE}


async def test_s_skips_a_pending_experiment_before_it_runs(tmp_path):
    config = two_batch_queue(tmp_path, steps=6)
    app = build(config, tmp_path)
    paused = pause_at_step(app, 3)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: paused.is_set() and app.state.paused, "the pause at step 3")
        await pilot.press("down")
        await pilot.press("s")
        assert "Skipping later (pending)" in notices(app)
        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
    rows = {r["name"]: r for r in results_json(app.session.run_dir)["experiments"]}
    assert rows["first"]["status"] == ev.DONE
    assert rows["later"]["status"] == ev.SKIPPED and rows["later"]["steps_done"] == 0


@pytest.mark.parametrize("key", ["q", "ctrl+c"])
async def test_the_quit_dialog_takes_its_key_again_as_yes_and_a_third_exits_at_once(small_queue, tmp_path, key):
    app = build(small_queue, tmp_path)
    paused = pause_at_step(app, 5)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, paused.is_set, "the pause at step 5")
        await pilot.press(key)
        await pilot.pause()
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press(key)  # again, in the dialog: stop and quit
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmQuit) and app.quitting and app.steering.stop_requested
        await wait_until(pilot, lambda: app.engine_code is not None, "the engine to save and stop")
    assert app.return_code == 130
    assert results_json(app.session.run_dir)["status"] == ev.INTERRUPTED


async def test_the_same_key_once_more_while_stopping_exits_without_waiting(small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    app.engine_gate = threading.Event()  # the engine never gets going: only the forced exit can end this
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+c")
        await pilot.press("ctrl+c")
        assert app.quitting
        await pilot.press("ctrl+c")
        await pilot.pause()
    assert app.forced_exit and app.return_code == 130
    app.join_engine(timeout=60)


async def test_while_paused_the_eta_says_paused_and_the_speed_is_the_engines(small_queue, tmp_path):
    app = build(small_queue, tmp_path, stable=False)  # speed and ETA on screen
    first, second = pause_at_steps(app, "baseline", (4, 8))
    pausing = app.event_tap
    steps: list[ev.Step] = []

    def tap(event: ev.Event) -> None:
        if isinstance(event, ev.Step) and event.name == "baseline":
            steps.append(event)
        pausing(event)

    app.event_tap = tap
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, lambda: first.is_set() and app.state.paused, "the pause at step 4")
        await wait_until(pilot, lambda: not app.bridge._events, "the events to drain")
        # The title redraws on the app's 4 Hz timer, which a loaded machine can delay past a fixed pause.
        await wait_until(pilot, lambda: "ETA paused" in app.trace.render().plain, "the title to say paused")
        await pilot.pause(0.3)
        title = app.trace.render().plain.splitlines()[0]
        assert "step 4/12" in title and "ETA paused" in title, title  # and it stays so: not a number ticking on
        app.steering.resume()
        await wait_until(pilot, lambda: second.is_set() and app.state.paused, "the pause at step 8")
        await wait_until(pilot, lambda: not app.bridge._events, "the events to drain")
        # The speed and ETA drawn when running are the engine's (its rate leaves paused time out): nothing
        # in the dashboard times steps itself.
        last, view = steps[-1], app.state.experiments["baseline"]
        app.trace.show(view, paused=False)
        title = app.trace.lines(200)[0].plain
        assert f"{last.steps_per_s:.1f}/s" in title
        assert f"ETA {duration((last.total - last.step) / last.steps_per_s)}" in title
        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
