"""Snapshots of the real dashboard at 80x24: loading, running, finished with the table.

Deterministic because the data is: seeded experiments, single-threaded torch,
the engine paused at an exact step from inside its own thread, and the
app's stable mode (no speed, ETA or paths on screen). Update with
``pytest tests/tui/test_snapshots.py --snapshot-update`` and look at the SVGs.
"""

from __future__ import annotations

import threading

import pytest
from tui_helpers import build, pause_at_step, queue_toml, stop_engine, table_rows, wait_until

SIZE = (80, 24)


def test_loading(snap_compare, small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    app.engine_gate = threading.Event()  # the first frame, before the engine reports anything

    async def before(pilot):
        await pilot.pause()

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=before)
    finally:
        stop_engine(app)


def test_running(snap_compare, small_queue, tmp_path):
    app = build(small_queue, tmp_path)
    paused = pause_at_step(app, 8)

    async def before(pilot):
        await wait_until(pilot, lambda: paused.is_set() and app.state.paused, "the pause at step 8")
        await wait_until(pilot, lambda: not app.bridge._events, "the events to drain")
        app.clear_notifications()
        app._dirty = True
        app._redraw()
        await pilot.pause()

    try:
        assert snap_compare(app, terminal_size=SIZE, run_before=before)
    finally:
        stop_engine(app)


@pytest.mark.parametrize("size", [SIZE, (120, 40)], ids=["80x24", "120x40"])
def test_finished_with_table(snap_compare, small_queue, tmp_path, size):
    """The Results tab fitted to the terminal: the honest score (Text Sim, Text) and the Oracle in view."""
    app = build(small_queue, tmp_path)

    async def before(pilot):
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        await wait_until(pilot, lambda: app.table._width == size[0], "the table to fit the width")
        app.clear_notifications()
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=before)


FLUENT_QUEUE = (
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


@pytest.fixture
def fluent_queue(tmp_path):
    path = tmp_path / "experiments.toml"
    path.write_text(queue_toml(FLUENT_QUEUE, steps=8, decode_every=4), encoding="utf-8")
    return path


@pytest.mark.parametrize("size", [SIZE, (120, 40)], ids=["80x24", "120x40"])
def test_front_table(snap_compare, fluent_queue, tmp_path, size):
    """A fluent_swap row's record (Enter on its Results row): its front as a table, whole sentences wrapped."""
    app = build(fluent_queue, tmp_path)

    async def before(pilot):
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        app.clear_notifications()
        app.table.focus()
        app.table.move_cursor(row=[r[0].strip("★ ") for r in table_rows(app)].index("fluent"), column=0)
        await pilot.press("enter")
        await pilot.pause()

    assert snap_compare(app, terminal_size=size, run_before=before)


@pytest.mark.parametrize("size", [SIZE, (120, 40)], ids=["80x24", "120x40"])
def test_front_plot(snap_compare, fluent_queue, tmp_path, size):
    """The Plot tab's third view: similarity against NLL per token, the true sentence marked O."""
    app = build(fluent_queue, tmp_path)

    async def before(pilot):
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        app.clear_notifications()
        await pilot.press("3", "m", "m")
        await wait_until(pilot, lambda: app.curves is not None and app.curves.view == "front", "the front view")
        await pilot.pause(0.3)

    assert snap_compare(app, terminal_size=size, run_before=before)
