"""The Ray workers of a run as the faces show them: who runs what where, who died, how many are up.

Plain Python, folded from the ray executor's events (WorkerStarted, WorkerDied,
BatchAssigned); the headless lines and the dashboard's workers line both read
from here, so they say the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from engine import events as ev

WORKER_EVENTS = (ev.WorkerStarted, ev.WorkerDied, ev.BatchAssigned)


def place(worker: str, gpus: tuple[str, ...]) -> str:
    """``w1 GPU 0`` / ``w2 cpu``: a worker and what it computes on."""
    return f"{worker} GPU {','.join(gpus)}" if gpus else f"{worker} cpu"


def worker_line(event: ev.Event) -> str:
    """One headless line for a worker event ("" for other events)."""
    if isinstance(event, ev.WorkerStarted):
        plural = "s" * (event.workers != 1)
        return f"worker {place(event.worker, event.gpus)} ready on {event.host} (pid {event.pid}); {event.workers} worker{plural} up"
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


@dataclass
class Cluster:
    workers: dict[str, tuple[str, ...]] = field(default_factory=dict)  # live worker -> its GPUs
    running: dict[str, tuple[str, ...]] = field(default_factory=dict)  # worker -> the batch it runs
    died: list[str] = field(default_factory=list)  # "w1 died (a, c run again 2/3)", latest last
    size: int = 0

    def apply(self, event: ev.Event) -> None:
        if isinstance(event, ev.WorkerStarted):
            self.workers[event.worker] = event.gpus
            self.size = event.workers
        elif isinstance(event, ev.BatchAssigned):
            self.running[event.worker] = event.batch
        elif isinstance(event, ev.WorkerDied):
            self.workers.pop(event.worker, None)
            self.running.pop(event.worker, None)
            self.size = event.workers
            what = f"{', '.join(event.batch)} " if event.batch else ""
            tail = f"{what}retry {event.attempt + 1}/{event.max_attempts}" if event.retry else f"{what}failed"
            self.died = (self.died + [f"{event.worker} died ({tail.strip()})"])[-3:]

    def finished(self, name: str) -> None:
        """Experiment ``name`` ended: its worker runs the rest of its batch, and shows idle once none is left."""
        for worker, batch in list(self.running.items()):
            if name in batch:
                left = tuple(n for n in batch if n != name)
                if left:
                    self.running[worker] = left
                else:
                    del self.running[worker]

    def where(self, name: str) -> str | None:
        """The worker (and GPU) running experiment ``name``, if one is."""
        for worker, batch in self.running.items():
            if name in batch and worker in self.workers:
                return place(worker, self.workers[worker])
        return None

    def summary(self, width: int | None = None) -> str:
        """Each worker and its batch; past ``width`` characters a batch shortens to its first name and a count,
        so that every worker stays on the line (``w1 cpu: s0_baseline +6 · w2 cpu: s1_baseline +6``)."""
        full = self._join(lambda batch: ", ".join(batch))
        if width is None or len(full) <= width:
            return full
        return self._join(lambda batch: batch[0] + (f" +{len(batch) - 1}" if len(batch) > 1 else ""))

    def _join(self, names: Callable[[tuple[str, ...]], str]) -> str:
        parts = []
        for worker, gpus in self.workers.items():
            batch = self.running.get(worker)
            parts.append(f"{place(worker, gpus)}: {names(batch) if batch else 'idle'}")
        return " · ".join(parts + self.died)
