"""Helpers (imported by the tests/tui modules) for driving the real dashboard on a small real queue.

The queue runs on the embedded default (the shipped mini cards and predictor)
when its weights are installed, else on the tiny random-init cards the root
conftest writes, so the suite runs while the mini models are being trained.
Every test drives the real engine in the app's own thread; nothing is faked.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
import tomllib
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from engine import events as ev

REPO = Path(__file__).resolve().parents[2]
LILY = tomllib.loads((REPO / "experiments.toml").read_text(encoding="utf-8"))["stories"]["lily"]["sentences"]
WAIT_S = 120.0  # a bound for a hung test on a loaded 2-core machine, not a speed check


def mini_installed() -> bool:
    from engine import mini

    return (Path(mini.PREDICTOR_DIR) / "config.json").is_file()


def backend_toml() -> str:
    if mini_installed():
        return '[backend]\nkind = "mini"\ndevice = "cpu"\n'
    tiny = Path(os.environ["EMBOPT_TINY_DIR"])
    return (
        '[backend]\nkind = "mini"\ndevice = "cpu"\n'
        'encoder = "tiny_encoder"\ndecoder = "tiny_decoder"\ntokenizer = "tiny_encoder"\n'
        f"predictor = {json.dumps(str(tiny / 'predictor'))}\n"
    )


def queue_toml(experiments: Iterable[dict[str, Any]], *, steps: int = 12, decode_every: int = 4) -> str:
    lines = [
        backend_toml(),
        f'[defaults]\nstory = "lily"\nsteps = {steps}\ndecode_every = {decode_every}\nseed = 0\n',
        f"[stories.lily]\nsentences = {json.dumps(LILY)}\noptimize = 0\ntargets = [1]\n",
    ]
    for experiment in experiments:
        body = "\n".join(f"{key} = {json.dumps(value)}" for key, value in experiment.items())
        lines.append(f"[[experiments]]\n{body}\n")
    return "\n".join(lines)


SMALL_QUEUE = (
    {"name": "baseline", "init": "I like cheese.", "lr": 0.02},
    {"name": "higher_lr", "init": "I like cheese.", "lr": 0.05},
    {"name": "story_init", "init": "There was a boy named Tom.", "lr": 0.02, "steps": 8},
)


def build(config: Path, tmp_path: Path, **kwargs: Any) -> Any:
    """The dashboard on ``config``, its runs under tmp_path, in stable mode unless ``stable=False``."""
    from embopt_tui.dashboard.app import make_app

    return make_app(config, runs_dir=tmp_path / "runs", **{"stable": True, **kwargs})


async def wait_until(pilot: Any, condition: Callable[[], bool], what: str, timeout: float = WAIT_S) -> None:
    """Let the app run until ``condition()`` holds (fails after ``timeout`` with ``what``)."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not condition():
        if loop.time() > end:
            raise AssertionError(f"timed out waiting for: {what}")
        if not pilot.app.is_running or pilot.app.return_code is not None:
            raise AssertionError(f"the app exited (return code {pilot.app.return_code}) while waiting for: {what}")
        await pilot.pause(0.05)


def pause_at_step(app: Any, step: int) -> threading.Event:
    """Pause the engine right after it emits step ``step`` (in its own thread, so exactly there).

    Returns an event set once the engine has acknowledged the pause (its Paused event).
    """
    acknowledged = threading.Event()
    armed = [True]

    def tap(event: ev.Event) -> None:
        if armed[0] and isinstance(event, ev.Step) and event.step >= step:
            armed[0] = False
            app.steering.pause()
        elif isinstance(event, ev.Paused) and event.paused:
            acknowledged.set()

    app.event_tap = tap
    return acknowledged


def results_json(run_dir: Path) -> dict[str, Any]:
    return json.loads((Path(run_dir) / "results.json").read_text(encoding="utf-8"))


def stop_engine(app: Any) -> None:
    """After a Pilot session that left the engine running: stop it and wait until it saved."""
    if app.engine_gate is not None:
        app.engine_gate.set()
    app.steering.request_stop()
    if app.engine_thread is not None:
        app.engine_thread.join(WAIT_S)


def table_rows(app: Any) -> list[list[str]]:
    """The Results table's cells as text, row by row."""
    table = app.query_one("#table")
    return [[cell.plain for cell in table.get_row_at(i)] for i in range(table.row_count)]


def notices(app: Any) -> str:
    return "\n".join(f"{n.title}: {n.message}" for n in app._notifications)


def two_stories(queue: list[dict[str, object]]) -> str:
    """A queue whose experiments on story "other" run as a second batch."""
    other = f"[stories.other]\nsentences = {json.dumps(LILY)}\noptimize = 0\ntargets = [2]\n\n[[experiments]]"
    return queue_toml(queue).replace("[[experiments]]", other, 1)


def two_batch_queue(tmp_path: Path, **first: Any) -> Path:
    """experiments.toml of two batches: "first" (on lily, with ``first``'s settings), then "later" (on "other")."""
    queue = [
        {"name": "first", "init": "I like cheese.", **first},
        {"name": "later", "init": "There was a boy named Tom.", "story": "other"},
    ]
    config = tmp_path / "experiments.toml"
    config.write_text(two_stories(queue), encoding="utf-8")
    return config
