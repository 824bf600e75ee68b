"""The headless views fed with real engine events: what a terminal or a log file shows."""

from __future__ import annotations

import io

from embopt_tui.headless import PlainView, RichView
from engine import events as ev


def started(name: str, steps: int) -> ev.ExperimentStarted:
    return ev.ExperimentStarted(name, steps, (name,), init_sim=0.1, oracle_sim=0.8, targets=("She loved.",))


def step(name: str, n: int, total: int, rate: float) -> ev.Step:
    return ev.Step(name, n, total, sim=0.5, sims=(0.5,), loss=0.5, norm=0.2, steps_per_s=rate)


def test_the_eta_comes_from_the_engines_rate_not_from_wall_time() -> None:
    """The engine's steps/s leaves paused (or Ctrl+Z-stopped) time out; an ETA of the view's own would count it."""
    out = io.StringIO()
    view = RichView(out)
    view.on_event(started("a", 1000))
    view.on_event(step("a", 499, 1000, 50.0))
    view.on_event(step("a", 500, 1000, 50.0))  # 500 steps left at 50 steps/s, however long the gap between events
    view.close()
    assert "50.0 steps/s ETA 10s" in out.getvalue()

    log = io.StringIO()
    plain = PlainView(log, every=0.0)
    plain.on_event(step("a", 500, 1000, 50.0))
    assert "50.0 steps/s, ETA 10s | a 500/1000 sim 0.500" in log.getvalue()


def test_a_skipped_experiment_gets_its_own_mark() -> None:
    out = io.StringIO()
    view = RichView(out)
    for name in ("a", "b"):
        view.on_event(started(name, 10))
    view.on_event(ev.ExperimentFinished("a", ev.DONE, {"steps_done": 10, "steps": 10}))
    view.on_event(ev.ExperimentFinished("b", ev.SKIPPED, {"steps_done": 3, "steps": 10}))
    view.close()
    text = out.getvalue()
    assert "✓ a" in text and "» b" in text and "skipped b at step 3/10" in text
