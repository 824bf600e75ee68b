"""The queue: every experiment's status and result, its batches, and its answers to the steering.

A batch is the first pending experiment plus every later pending one on the
same story, method and bank (the backend is the spec's), at most
:data:`MAX_BATCH` rows, or as many as the executor's limit says
(:mod:`engine.run.sizing`: what fits on a CUDA device). Between optimiser steps every executor asks
:meth:`Queue.poll`, the engine's only contact with its :class:`Steering`: it
applies live edits to pending experiments, blocks while paused, ends skipped
pending experiments, and returns the :class:`Command` for the running batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from engine import events as ev
from engine.methods.method import GO_ON, STOP, Command
from engine.results import FINISHED, best_by_story, result_row
from engine.run.steering import Steering
from engine.spec import Experiment, Spec

MAX_BATCH = 32
PAUSE_POLL_S = 0.1  # while paused: how often live edits and stop requests are looked at

Emit = Callable[[ev.Event], None]


class Queue:
    """Names in queue order, each with its experiment (from the current spec), status and result."""

    def __init__(
        self, spec: Spec, emit: Emit, steering: Steering, completed: Mapping[str, dict[str, Any]] | None = None
    ) -> None:
        self.spec = spec
        self.emit = emit
        self.steering = steering
        self.names = [e.name for e in spec.experiments]
        self.experiments: dict[str, Experiment] = {e.name: e for e in spec.experiments}
        self.results: dict[str, dict[str, Any]] = {}
        self.status: dict[str, str] = dict.fromkeys(self.names, ev.PENDING)
        self._running: set[str] = set()
        for name in self.names:
            result = (completed or {}).get(name)
            if result is not None and result.get("status") in FINISHED:
                self.results[name] = dict(result)
                self.status[name] = result["status"]

    # --- what is in it --------------------------------------------------------
    def event(self) -> ev.QueueChanged:
        return ev.QueueChanged(tuple(self.names), tuple(self.status[n] for n in self.names))

    def pending(self) -> list[Experiment]:
        return [self.experiments[n] for n in self.names if self.status[n] == ev.PENDING]

    def running(self) -> frozenset[str]:
        return frozenset(self._running)

    def next_batch(self, limit: Callable[[list[Experiment]], int] | None = None) -> list[Experiment]:
        """The next batch; ``limit``: how many of these experiments (one story, method and bank) it may hold."""
        pending = self.pending()
        if not pending:
            return []
        first = pending[0]
        same = [e for e in pending if (e.story, e.method, e.bank) == (first.story, first.method, first.bank)]
        return same[: limit(same) if limit is not None else MAX_BATCH]

    def rows(self) -> tuple[dict[str, Any], ...]:
        out = []
        for name in self.names:
            if name in self.results:
                out.append(self.results[name])
            else:
                experiment = self.experiments[name]
                out.append(result_row(experiment, self.spec.story_of(experiment), self.status[name]))
        return tuple(out)

    def best(self) -> dict[str, str]:
        return best_by_story(self.rows(), self.spec.rank_by)

    # --- changes ----------------------------------------------------------------
    # Each change is an event of its own size, never the whole queue's: a queue of thousands costs each
    # experiment the same as a queue of ten (QueueChanged is for the order: the start and live edits).
    def start(self, batch: list[Experiment]) -> None:
        for experiment in batch:
            self.status[experiment.name] = ev.RUNNING
            self._running.add(experiment.name)
        self.emit(ev.BatchStarted(tuple(e.name for e in batch)))

    def finish(self, result: dict[str, Any]) -> None:
        name = result["name"]
        self.results[name], self.status[name] = result, result["status"]
        self._running.discard(name)
        # A copy: consumers may take keys out (the store moves z to the embeddings file).
        self.emit(ev.ExperimentFinished(name, result["status"], dict(result)))

    def end_pending(self, status: str, names: Any = None, error: str | None = None) -> None:
        """End pending experiments (those in ``names``; all with None) without running them, as ``status``."""
        for name in list(self.names):
            if self.status[name] == ev.PENDING and (names is None or name in names):
                experiment = self.experiments[name]
                self.finish(dict(result_row(experiment, self.spec.story_of(experiment), status), error=error))

    def reload(self, spec: Spec) -> None:
        """Pending experiments follow the new spec; running and finished ones stay as they are."""
        new = {e.name: e for e in spec.experiments}
        self.names = [n for n in self.names if n in new or self.status[n] != ev.PENDING]
        for name, experiment in new.items():
            if name not in self.status:
                self.names.append(name)
                self.status[name] = ev.PENDING
            if self.status[name] == ev.PENDING:
                self.experiments[name] = experiment
        self.spec = spec

    # --- the steering -------------------------------------------------------------
    def poll(self, running: frozenset[str] = frozenset()) -> Command:
        """Between steps: apply what the steering asks; blocks while paused. Returns the running batch's command."""
        steering = self.steering
        self.apply_edit()
        if steering.paused and not steering.stop_requested:
            self.emit(ev.Paused(True))
            while not steering.wait_while_paused(PAUSE_POLL_S) and not steering.stop_requested:
                self.apply_edit()  # edits made while paused show in the queue at once
            self.emit(ev.Paused(False))
            self.apply_edit()
        if steering.stop_requested:
            return STOP
        names = self.take_skip(running)
        return Command(skip=names) if names else GO_ON

    def take_skip(self, running: frozenset[str]) -> frozenset[str]:
        """Skip requests: pending experiments end as skipped here; returns the ``running`` ones to skip."""
        skip = self.steering.take_skip()
        if not skip:
            return frozenset()
        self.end_pending(ev.SKIPPED, skip)
        return running if None in skip else running & frozenset(skip)

    def apply_edit(self) -> None:
        """A live edit the steering holds, applied to the pending experiments, or refused as a whole when it would
        change (or drop) one that runs or ran: config.toml then always says what ran."""
        spec = self.steering.take_spec()
        if spec is None:
            return
        problem = self.edit_problem(spec)
        if problem is not None:
            self.emit(ev.ConfigRejected(f"{spec.path}: {problem}"))
            return
        self.reload(spec)
        self.emit(ev.ConfigApplied(spec.text))  # the run directory keeps it: --resume continues this queue
        self.emit(self.event())

    def edit_problem(self, spec: Spec) -> str | None:
        """Why ``spec`` cannot replace the queue's, in one line: it changes or drops a started experiment."""
        new = {e.name: e for e in spec.experiments}
        for name in self.names:
            status = self.status[name]
            if status == ev.PENDING:
                continue
            old = self.experiments[name]
            how = "keep it as it ran, and add a new experiment for new settings"
            if name not in new:
                return f"{name} is {status}: it cannot leave the file ({how})"
            change = _change(old, new[name]) or _change(self.spec.story_of(old), spec.stories.get(old.story))
            if change:
                return f"{name} is {status}: its {change} cannot change ({how})"
        return None


def _change(old: Any, new: Any) -> str | None:
    """The first field that differs between two frozen dataclasses, as ``field: old -> new``; None when equal."""
    if old == new:
        return None
    if new is None:
        return "story"
    for f in dataclasses.fields(old):
        a, b = getattr(old, f.name), getattr(new, f.name)
        if a != b:
            return f"{f.name}" if dataclasses.is_dataclass(a) else f"{f.name} ({a!r} -> {b!r})"
    return "settings"
