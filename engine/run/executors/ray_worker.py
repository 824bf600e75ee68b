"""A worker of the ray executor: a Ray actor that loads the models once and runs batches.

It runs each batch with the engine's own code (:func:`engine.run.batches.run_batch`)
in a thread of its own and streams what the engine emits back to the driver
as JSON-shaped dicts: ``{"event": Event.to_json()}``, ``{"finished": result
row}``, or ``{"error": one line}``. It writes nothing: the driver is the only
writer of the run directory. Two calls run at once (``max_concurrency=2``) so
that :meth:`BatchWorker.signal` (stop, skip) reaches a running batch, whose
``poll`` reads it between steps.
"""

from __future__ import annotations

import os
import socket
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import ray

from engine.methods.method import GO_ON, STOP, Command
from engine.spec import Experiment, Spec
from engine.text import one_line

# What a worker gathers into one streamed object, at the faces' own 4 Hz. Each object wakes the driver; where it
# shares the cores with the workers each wake-up preempts one: 0.1 s made the batches ~10 % slower than 0.25 s here.
STREAM_EVERY_S = 0.25
STREAM_BATCH = 1024


@ray.remote(max_restarts=0, max_concurrency=2)
class BatchWorker:
    def __init__(self, threads: int | None) -> None:
        if threads is not None:
            import torch

            torch.set_num_threads(threads)
        self.models: Any = None
        self.banks: dict = {}
        self.checked: set[str] = set()  # stories whose round trip this worker announced (the driver keeps one each)
        self._lock = threading.Lock()
        self._commands: dict[int, str | set[str]] = {}  # batch id -> "stop" or names to skip

    def prepare(self, spec: Spec) -> dict[str, Any]:
        """Load the backend (once); returns where this worker runs and the loading events to show."""
        from engine.run.backend import ready

        events: list[Any] = []
        self.models = ready(spec.backend, None, spec, events.append)
        gpus = ray.get_runtime_context().get_accelerator_ids().get("GPU", [])
        return {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "gpus": [str(g) for g in gpus],
            "device": str(self.models.space.device),
            "events": [e.to_json() for e in events],
        }

    def signal(self, batch_id: int, command: str | list[str]) -> None:
        """``"stop"``, or names of the batch to skip: read by the batch's poll between steps."""
        with self._lock:
            current = self._commands.get(batch_id)
            if command == "stop" or current == "stop":
                self._commands[batch_id] = "stop"
            else:
                self._commands[batch_id] = set(current or ()) | set(command)

    def _poll(self, batch_id: int) -> Command:
        with self._lock:
            command = self._commands.get(batch_id)
            if command == "stop":
                return STOP
            if command:
                self._commands[batch_id] = set()
                return Command(skip=frozenset(command))
            return GO_ON

    @ray.method(num_returns="streaming", max_task_retries=0)  # retries replay the stream: the driver retries
    def run_batch(self, batch_id: int, experiments: list[Experiment], spec: Spec) -> Iterator[list[dict[str, Any]]]:
        # The batch's thread appends, this one collects every STREAM_EVERY_S: waking it on each event would hand
        # the GIL back and forth thousands of times a batch and slow the batch's own small torch calls.
        out: deque[dict[str, Any]] = deque()
        ended = threading.Event()

        from engine.run.batches import run_batch  # torch: in the worker, never in the driver that imports this class

        def work() -> None:
            try:
                run_batch(
                    list(experiments),
                    spec,
                    self.models,
                    self.banks,
                    emit=lambda event: out.append({"event": event.to_json()}),
                    on_finished=lambda result: out.append({"finished": result}),
                    poll=lambda: self._poll(batch_id),
                    checked=self.checked,
                )
            except BaseException as err:  # the driver fails what did not finish, with this line
                out.append({"error": one_line(err)})
            finally:
                ended.set()

        threading.Thread(target=work, name=f"batch-{batch_id}", daemon=True).start()
        try:
            while True:
                done = ended.wait(STREAM_EVERY_S)
                while out:
                    items = [out.popleft() for _ in range(min(len(out), STREAM_BATCH))]
                    yield items
                if done:
                    return
        finally:
            with self._lock:
                self._commands.pop(batch_id, None)
