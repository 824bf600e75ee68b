"""The Ray workers of a run as the faces show them: who runs what where, who died, how many are up.

The workers are folded from the ray executor's events (WorkerStarted,
WorkerDied, BatchAssigned) by :class:`engine.rundir.fold.Workers`; the headless
lines and the dashboard's workers line both read them through here, so they
say the same thing.
"""

from __future__ import annotations

from collections.abc import Callable

from engine import events as ev
from engine.rundir.fold import WORKER_EVENTS, Workers

__all__ = ["WORKER_EVENTS", "place", "summary", "worker_line"]


def place(worker: str, gpus: tuple[str, ...]) -> str:
    """``w1 GPU 0`` / ``w2 cpu``: a worker and what it computes on."""
    return f"{worker} GPU {','.join(gpus)}" if gpus else f"{worker} cpu"


def worker_line(event: ev.Event) -> str:
    """One headless line for a worker event ("" for other events)."""
    if isinstance(event, ev.WorkerStarted):
        plural = "s" * (event.workers != 1)
        where = f"{place(event.worker, event.gpus)} ready on {event.host} (pid {event.pid})"
        return f"worker {where}; {event.workers} worker{plural} up"
    if isinstance(event, ev.WorkerDied):
        batch = ", ".join(event.batch)
        if not batch:
            return f"worker {event.worker} died: {event.error}"
        if event.retry:
            then = f"{batch} run again from the start (attempt {event.attempt + 1}/{event.max_attempts})"
        else:
            then = f"{batch} not run again (attempt {event.attempt}/{event.max_attempts})"
        return f"worker {event.worker} died: {event.error}; {then}"
    if isinstance(event, ev.BatchAssigned):
        again = f" (attempt {event.attempt})" if event.attempt > 1 else ""
        return f"{place(event.worker, event.gpus)} runs {', '.join(event.batch)}{again}"
    return ""


def summary(workers: Workers, width: int | None = None) -> str:
    """Each worker and its batch; past ``width`` characters a batch shortens to its first name and a count,
    so that every worker stays on the line (``w1 cpu: s0_baseline +6 · w2 cpu: s1_baseline +6``)."""
    full = _join(workers, lambda batch: ", ".join(batch))
    if width is None or len(full) <= width:
        return full
    return _join(workers, lambda batch: batch[0] + (f" +{len(batch) - 1}" if len(batch) > 1 else ""))


def _join(workers: Workers, names: Callable[[tuple[str, ...]], str]) -> str:
    parts = []
    for worker, gpus in workers.gpus.items():
        batch = workers.running.get(worker)
        parts.append(f"{place(worker, gpus)}: {names(batch) if batch else 'idle'}")
    return " · ".join(parts + workers.died)
