"""What the panels show: the queue's first frame, live rows in Results, the columns that differ, per-story
best marks, the Live chart's height, and the one key table behind bindings, help and palette."""

from __future__ import annotations

import json
import threading

from textual.app import App, ComposeResult
from tui_helpers import (
    SMALL_QUEUE,
    build,
    pause_at_step,
    queue_toml,
    results_json,
    stop_engine,
    table_rows,
    two_batch_queue,
    two_stories,
    wait_until,
)

from embopt_tui.dashboard import keys
from embopt_tui.dashboard.app import EmboptApp
from embopt_tui.dashboard.state import RunState
from embopt_tui.dashboard.widgets.queue import QueuePanel
from embopt_tui.dashboard.widgets.screens import HelpScreen
from embopt_tui.format import num
from engine import events as ev
from engine.rundir import report
from engine.spec import load_spec


class QueueOnly(App[None]):
    """The queue panel alone, shown once from on_mount, as the dashboard's first frame is, and never again."""

    def __init__(self, state: RunState) -> None:
        super().__init__()
        self.state = state

    def compose(self) -> ComposeResult:
        yield QueuePanel(id="queue")

    def on_mount(self) -> None:
        self.query_one(QueuePanel).show(self.state)  # before any layout: the panel's width is 0 here


async def test_the_queue_fits_its_names_to_its_width_without_waiting_for_another_frame(small_queue):
    # The cause of the snapshot that depended on test order: the names were cut to the width the panel had
    # before layout, and only the app's next timer tick (early or late, by load) redrew them.
    app = QueueOnly(RunState.from_spec(str(small_queue), load_spec(small_queue)))
    async with app.run_test(size=(40, 10)) as pilot:
        await pilot.pause()
        lines = app.query_one(QueuePanel).render().plain
        assert "higher_lr" in lines and "story_init" in lines and "…" not in lines


async def test_results_show_running_and_pending_rows_live_and_export_writes_them(tmp_path):
    config = two_batch_queue(tmp_path)
    app = build(config, tmp_path)
    paused = pause_at_step(app, 5)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_until(pilot, lambda: paused.is_set() and app.state.paused, "the pause at step 5")
        await wait_until(pilot, lambda: not app.bridge._events, "the events to drain")
        await pilot.press("2")
        await pilot.pause()
        rows = {r[0].split()[1]: r for r in table_rows(app)}
        live = app.state.experiments["first"]
        assert rows["first"][0].startswith("▶ ")
        headers = [c.label.plain for c in app.table.ordered_columns]
        assert rows["first"][headers.index("Final Sim")] == num(live.sims[-1])
        assert "Text Sim" in headers and "Oracle" in headers  # the table beside the queue kept the honest score
        assert rows["later"][0].startswith("· ") and rows["later"][headers.index("Final Sim")] == "-"

        await pilot.press("e")  # the mid-run export has the same rows
        await pilot.pause()
        exported = json.loads((app.session.run_dir / "export.json").read_text(encoding="utf-8"))
        by_name = {r["name"]: r for r in exported["experiments"]}
        assert by_name["first"]["status"] == ev.RUNNING and by_name["first"]["final_sim"] == live.sims[-1]
        assert by_name["first"]["steps_done"] == 5 and by_name["later"]["status"] == ev.PENDING
        run = report.Run(str(app.session.run_dir), exported)
        assert (app.session.run_dir / "export.csv").read_text(encoding="utf-8") == report.render([run], "csv")
        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")


async def test_best_is_marked_per_story_and_the_columns_that_differ_are_shown(tmp_path):
    config = tmp_path / "experiments.toml"
    queue = [
        {"name": "a_adam", "init": "I like cheese.", "steps": 4},
        {"name": "a_sgd", "init": "I like cheese.", "steps": 4, "optimizer": "sgd", "lr": 0.5},
        {"name": "b_one", "init": "There was a boy named Tom.", "story": "other", "steps": 4},
        {"name": "b_two", "init": "There was a boy named Tom.", "story": "other", "steps": 4, "lr": 0.05},
    ]
    config.write_text(two_stories(queue), encoding="utf-8")
    app = build(config, tmp_path)
    async with app.run_test(size=(160, 30)) as pilot:
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        await pilot.pause()
        best = set(results_json(app.session.run_dir)["best"].values())
        assert len(best) == 2 and len({name[0] for name in best}) == 2  # one per story
        starred = {line.plain.split()[1] for line in app.queue._lines if line.plain.startswith("★")}
        assert starred == best
        assert {r[0].split()[1] for r in table_rows(app) if r[0].startswith("★")} == best
        headers = [c.label.plain for c in app.table.ordered_columns]
        # Story and Optimizer differ between rows; Objective and Norm are the same on every row.
        assert "Story" in headers and "Optimizer" in headers and "Objective" not in headers and "Norm" not in headers
        assert headers.index("Text Sim") < headers.index("Story") < headers.index("Optimizer") < headers.index("Text")
        row = next(r for r in table_rows(app) if "a_sgd" in r[0])
        assert row[headers.index("Story")] == "lily" and row[headers.index("Optimizer")] == "sgd"


async def test_help_and_palette_come_from_one_key_table_with_the_real_file_name(tmp_path):
    config = tmp_path / "my-queue.toml"
    config.write_text(queue_toml(SMALL_QUEUE[:1]), encoding="utf-8")
    app = build(config, tmp_path)
    app.engine_gate = threading.Event()
    try:
        async with app.run_test(size=(80, 24)) as pilot:
            titles = [c.title for c in app.get_system_commands(app.screen)]
            assert len(titles) == len(set(titles)), titles  # Textual's own Quit and Keys are not listed again
            assert "Reload my-queue.toml" in titles and "Keys" not in titles
            for key in keys.KEYS:
                if key.title is not None:
                    assert key.title.format(config="my-queue.toml") in titles
                if key.action:
                    assert any(b.key == key.key and b.action == key.action for b in EmboptApp.BINDINGS)
            help_command = next(c for c in app.get_system_commands(app.screen) if c.title == "Help")
            await help_command.callback()
            await pilot.pause()
            assert isinstance(app.screen, HelpScreen)
            plain = str(app.screen.query_one("Static").render())
            assert "my-queue.toml" in plain and "experiments.toml" not in plain
            for key in keys.KEYS:
                if key.help is not None:
                    assert f"  {key.shown_as or key.key} " in plain
    finally:
        stop_engine(app)


async def test_the_live_chart_grows_with_the_terminal(small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    paused = pause_at_step(app, 6)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: paused.is_set() and app.state.paused, "the pause at step 6")
        await pilot.pause(0.3)
        assert app.trace.chart_rows == 3
        await pilot.resize_terminal(160, 48)
        await pilot.pause(0.3)
        assert app.trace.chart_rows >= 10 and app.trace.size.height == 4 + app.trace.chart_rows
        chart = app.trace.render().plain.splitlines()[2 : 2 + app.trace.chart_rows]
        assert chart[0].strip() and chart[-1].strip()  # both ends labelled, bars in between
        assert app.decoded.size.height >= 12
        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")


class WorkersOnly(App[None]):
    """The workers line alone, fed once from on_mount (before layout), as the dashboard's first event does."""

    def __init__(self, cluster) -> None:
        super().__init__()
        self.cluster = cluster

    def compose(self) -> ComposeResult:
        from embopt_tui.dashboard.widgets.workers import WorkersLine

        yield WorkersLine(id="workers")

    def on_mount(self) -> None:
        self.query_one("#workers").show(self.cluster)


async def test_the_workers_line_keeps_every_worker_on_screen_follows_the_width_and_shows_idle_ones():
    from engine.rundir.fold import Workers

    cluster = Workers()
    for worker, story in (("w1", "s0"), ("w2", "s1")):
        cluster.apply(ev.WorkerStarted(worker, "host", 1, (), "cpu", len(cluster.gpus) + 1))
        names = tuple(
            f"{story}_{n}"
            for n in (
                "baseline",
                "lower_lr",
                "higher_lr",
                "longer",
                "lower_lr_longer",
                "story_init",
                "story_init_lower_lr",
            )
        )
        cluster.apply(ev.BatchAssigned(worker, names, (), 1))
    app = WorkersOnly(cluster)
    async with app.run_test(size=(80, 3)) as pilot:
        await pilot.pause()
        line = app.query_one("#workers").render().plain
        assert "w1 cpu: s0_baseline +6" in line and "w2 cpu: s1_baseline +6" in line, line
        await pilot.resize_terminal(400, 3)
        await pilot.pause()
        line = app.query_one("#workers").render().plain
        assert "s0_story_init_lower_lr · w2 cpu: s1_baseline, s1_lower_lr" in line, line
        for name in cluster.running["w1"]:
            cluster.finished(name)
        cluster.finished("s1_baseline")
        app.query_one("#workers").show(cluster)
        await pilot.pause()
        line = app.query_one("#workers").render().plain
        assert "w1 cpu: idle · w2 cpu: s1_lower_lr, s1_higher_lr" in line, line
