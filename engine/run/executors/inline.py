"""The default executor: every batch in the calling (engine) thread, one after another."""

from __future__ import annotations

from typing import Any

from engine import events as ev
from engine.run.runner import Controls, Models, _Queue, apply_thread_limit, fail_pending, ready, run_batch
from engine.spec import Backend


def run_inline(queue: _Queue, controls: Controls, models: Models | None) -> bool:
    """Run the queue to its end; True when it was stopped. ``models``: preloaded for the spec's backend."""
    apply_thread_limit(queue.spec)  # the batches' torch runs in this process (a ray driver runs none)
    emit = controls.emit
    injected: dict[Backend, Models] = {queue.spec.backend: models} if models is not None else {}
    loaded: dict[Backend, Models] = {}
    banks: dict[tuple[str, Backend], Any] = {}

    while True:
        command = controls.between_steps(frozenset())
        batch = queue.next_batch()
        if not batch:
            return False
        if command == "stop":
            return True
        backend = queue.spec.backend
        try:
            current = loaded.get(backend) or ready(backend, injected.get(backend), queue.spec, emit)
        except Exception as err:  # the backend cannot load: nothing pending can run
            error = f"{type(err).__name__}: {err}".splitlines()[0]
            emit(ev.BackendFailed(error))
            fail_pending(queue, error, emit)
            return False
        loaded[backend] = current
        if controls.stop_requested():
            return True

        for experiment in batch:
            queue.status[experiment.name] = ev.RUNNING
        emit(queue.event())
        outcome: list[str] = []

        def on_finished(result: dict[str, Any]) -> None:
            queue.finish(result, emit)

        def poll() -> str | frozenset[str] | None:
            running = frozenset(n for n in queue.names if queue.status[n] == ev.RUNNING)
            command = controls.between_steps(running)
            if command == "stop":
                outcome.append(command)
            return command

        run_batch(batch, queue.spec, current, banks, emit=emit, on_finished=on_finished, poll=poll)
        if "stop" in outcome:
            return True
