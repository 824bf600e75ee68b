"""Run a queue to its end on its executor: :func:`run_queue`, the engine's entry point."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.run.backend import BackendError, Models
from engine.run.queue import Queue
from engine.run.steering import Steering
from engine.spec import Spec


@dataclass(frozen=True)
class RunResult:
    status: str  # done | failed | interrupted
    experiments: tuple[dict[str, Any], ...]  # result rows in queue order (pending ones included)
    best: dict[str, str]  # story -> its best experiment (engine.results.best_by_story)


def run_queue(
    spec: Spec,
    emit: Callable[[ev.Event], None],
    steering: Steering | None = None,
    *,
    completed: Mapping[str, dict[str, Any]] | None = None,
    models: Models | None = None,
    log_dir: Path | None = None,
) -> RunResult:
    """Run every pending experiment of ``spec``; ``steering`` stops, pauses, skips and edits it between steps.

    ``completed``: results of experiments that finished earlier (``--resume``), not run again;
    ``models``: the backend already loaded; ``log_dir``: where the ray executor writes its cluster's log.
    """
    queue = Queue(spec, emit, steering or Steering(), completed)
    emit(queue.event())
    try:
        if spec.executor.kind == "ray":
            from engine.run.executors.ray import run_on_ray  # ray loads only for this executor

            stopped = run_on_ray(queue, spec.executor, log_dir=log_dir)
        else:
            from engine.run.executors.inline import run_inline

            stopped = run_inline(queue, models)
    except BackendError as err:  # nothing pending ran: it stays pending for --resume
        emit(ev.BackendFailed(str(err)))
        return RunResult(ev.FAILED, queue.rows(), queue.best())
    rows = queue.rows()
    if stopped:
        status = ev.INTERRUPTED
    elif any(r["status"] == ev.FAILED for r in rows):
        status = ev.FAILED
    else:
        status = ev.DONE
    return RunResult(status, rows, queue.best())
