"""The default executor: every batch in the calling (engine) thread, one after another."""

from __future__ import annotations

from typing import Any

from engine.methods.method import Command
from engine.run.backend import BackendError, Models, ready
from engine.run.batches import run_batch
from engine.run.queue import Queue
from engine.run.sizing import DeviceLimit, device_limit
from engine.run.threads import apply_thread_limit
from engine.spec import Backend
from engine.text import one_line


def run_inline(queue: Queue, models: Models | None) -> bool:
    """Run the queue to its end; True when it was stopped. ``models``: preloaded for the spec's backend."""
    apply_thread_limit(queue.spec)  # the batches' torch runs in this process (a ray driver runs none)
    emit = queue.emit
    injected: dict[Backend, Models] = {queue.spec.backend: models} if models is not None else {}
    loaded: dict[Backend, Models] = {}
    banks: dict[tuple[str, Backend], Any] = {}
    checked: set[str] = set()  # stories whose round trip was announced
    limits: dict[Backend, DeviceLimit | None] = {}  # None: the fixed MAX_BATCH (off CUDA)

    while True:
        command = queue.poll()
        if not queue.pending():
            return False
        if command.stop:
            return True
        backend = queue.spec.backend
        try:
            current = loaded.get(backend) or ready(backend, injected.get(backend), queue.spec, emit)
        except Exception as err:  # the backend cannot load: nothing pending can run, nor fail
            raise BackendError(one_line(err)) from None
        loaded[backend] = current
        if queue.steering.stop_requested:
            return True
        if backend not in limits:
            limits[backend] = device_limit(
                current,
                story_of=lambda e: queue.spec.story_of(e),
                loaded_banks=lambda value, b=backend: (value, b) in banks,
                emit=emit,
            )
        batch = queue.next_batch(limits[backend])

        queue.start(batch)
        stopped = False

        def poll() -> Command:
            nonlocal stopped
            command = queue.poll(queue.running())
            stopped = stopped or command.stop
            return command

        run_batch(batch, queue.spec, current, banks, emit=emit, on_finished=queue.finish, poll=poll, checked=checked)
        if stopped:
            return True
