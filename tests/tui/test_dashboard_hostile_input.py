"""The dashboard on hostile input: control characters shown as escapes, live edits that cannot be read survived."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from tui_helpers import LILY, SMALL_QUEUE, build, notices, pause_at_step, queue_toml, wait_until

from engine import events as ev

RAW_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
HOSTILE_INIT = "I like \x1b[2J\x1b]0;PWNED\x07 cheese \u009b31m."


def touch(path: Path) -> None:
    """A save the mtime poll sees, whatever the file system's timestamp granularity."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))


def screen_text(app) -> str:
    """Every character the screen holds now, as Textual would send it (segments of every line)."""
    return "\n".join(
        "".join(segment.text for segment in strip) for strip in app.screen._compositor.render_update(full=True).strips
    )


async def test_control_characters_in_texts_reach_no_panel_raw(tmp_path: Path) -> None:
    hostile = "She loved to \x1b[31mplay\x1b[0m outside.\u2028"
    text = queue_toml([{"name": "hostile", "init": HOSTILE_INIT}, SMALL_QUEUE[1]], steps=4, decode_every=2)
    config = tmp_path / "experiments.toml"
    config.write_text(text.replace(json.dumps(LILY[1]), json.dumps(hostile)), encoding="utf-8")
    app = build(config, tmp_path)
    async with app.run_test(size=(180, 40)) as pilot:  # wide enough for Init Text beside the NLL columns
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        for tab in ("live", "results"):
            app.action_show_tab(tab)
            app.queue.select("hostile")
            # the init text shown escaped (the Init Text column may clip it after that): waited for, not slept
            # on, since a loaded machine draws the Results table later than 0.3 s
            await wait_until(pilot, lambda: "\\x1b[2" in screen_text(app), f"the {tab} tab showing the escaped init")
            shown = screen_text(app)
            assert not RAW_CONTROLS.search(shown) and "\u2028" not in shown, (tab, RAW_CONTROLS.findall(shown))
        app.notify(f"a toast naming {HOSTILE_INIT}", title="x\x1b[2J")
        assert not RAW_CONTROLS.search(notices(app))
        await pilot.press("q")


async def test_a_live_edit_that_cannot_be_parsed_for_any_reason_leaves_the_queue_running(tmp_path: Path) -> None:
    config = tmp_path / "experiments.toml"
    config.write_text(queue_toml(SMALL_QUEUE[:1], steps=8), encoding="utf-8")
    app = build(config, tmp_path)
    paused = pause_at_step(app, 2)
    async with app.run_test(size=(100, 30)) as pilot:
        await wait_until(pilot, paused.is_set, "the pause at step 2")

        # Saved while it runs: the file poll reads it (it used to raise RecursionError out of the timer, ending
        # the app and its run).
        config.write_text(queue_toml(SMALL_QUEUE[:1]) + "deep = " + "[" * 500 + "]" * 500 + "\n")
        touch(config)
        await wait_until(pilot, lambda: "arrays or tables nested 500 deep" in notices(app), "the refusal")

        config.unlink()
        os.mkfifo(config)  # used to block the UI thread for ever, waiting for a writer
        touch(config)
        await wait_until(pilot, lambda: "not a regular file: it is a named pipe" in notices(app), "the refusal")

        app.steering.resume()
        await wait_until(pilot, lambda: app.engine_code is not None, "the queue to finish")
        assert [x.status for x in app.state.experiments.values()] == [ev.DONE]
        await pilot.press("q")
    assert app.return_code == 0
