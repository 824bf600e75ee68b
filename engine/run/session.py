"""One run, wired: config -> run directory -> engine -> saved results.

Both faces use this, so nothing about saving lives in a face: headless calls
:meth:`Session.run` (in a worker thread, so the main thread stays free for
signals), the dashboard calls it in its engine thread. Every event goes to the
run directory first, then to the face's callback; a callback that raises is
dropped rather than allowed to stop the engine (a dead SSH terminal must not
lose the run).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from engine import events as ev
from engine.run.steering import Steering
from engine.rundir.store import CONFIG_FILE, RunStore
from engine.spec import Spec, SpecError, parse_spec, read_config

Consumer = Callable[[ev.Event], None]


class Session:
    """A prepared run: the spec is valid and the run directory exists; :meth:`run` runs it."""

    def __init__(self, spec: Spec, store: RunStore, *, resumed: bool, steering: Steering | None = None) -> None:
        self.spec = spec
        self.store = store
        self.store.spec = spec
        self.resumed = resumed
        self.steering = steering or Steering()
        self._consumers: list[Consumer] = []
        self.consumer_errors: list[str] = []
        self.models: Any = None  # preloaded models handed to run_queue (tests, benchmarks)

    @property
    def run_dir(self) -> Path:
        return self.store.run_dir

    @classmethod
    def start(
        cls,
        config_path: str | Path,
        runs_dir: str | Path = "runs",
        *,
        steering: Steering | None = None,
        on_event: Consumer | None = None,
    ) -> Session:
        """Validate the config (SpecError) and create its run directory (StoreError)."""
        config_path = Path(config_path)
        text = read_config(config_path)
        spec = parse_spec(text, config_path)
        session = cls(spec, RunStore.create(config_path, runs_dir, text), resumed=False, steering=steering)
        if on_event is not None:
            session.subscribe(on_event)
        return session

    @classmethod
    def from_spec(
        cls,
        spec: Spec,
        runs_dir: str | Path = "runs",
        *,
        steering: Steering | None = None,
        on_event: Consumer | None = None,
    ) -> Session:
        """A run of an already validated spec (the Python front door): its text is the run directory's config.toml."""
        session = cls(spec, RunStore.create(spec.path, runs_dir, spec.text), resumed=False, steering=steering)
        if on_event is not None:
            session.subscribe(on_event)
        return session

    @classmethod
    def resume(
        cls,
        run_dir: str | Path,
        *,
        steering: Steering | None = None,
        on_event: Consumer | None = None,
    ) -> Session:
        """Reopen a run directory (StoreError); its config.toml must still be valid (SpecError)."""
        store = RunStore.open(run_dir)
        # Relative predictor paths were written relative to the original config, not the copy.
        base_dir = Path(store.config_path).parent if store.config_path else None
        try:
            spec = parse_spec(store.config_text, Path(run_dir) / CONFIG_FILE, base_dir=base_dir)
        except SpecError:
            store.close()
            raise
        session = cls(spec, store, resumed=True, steering=steering)
        if on_event is not None:
            session.subscribe(on_event)
        return session

    def use_executor(self, kind: str | None = None, address: str | None = None) -> None:
        """The command line's --executor / --address over the config's [executor] (for this run only)."""
        executor = self.spec.executor
        if address is not None:
            executor = dataclasses.replace(executor, address=address.strip(), kind=kind or "ray")
        if kind is not None:
            executor = dataclasses.replace(executor, kind=kind)
        self.spec = dataclasses.replace(self.spec, executor=executor)
        self.store.spec = self.spec

    def subscribe(self, consumer: Consumer) -> None:
        self._consumers.append(consumer)

    def emit(self, event: ev.Event) -> None:
        self.store.record(event)
        if self.store.fault is not None and not self.steering.stop_requested:
            self.steering.request_stop()  # the run directory cannot take more: stop between steps, lose nothing
        for consumer in list(self._consumers):
            try:
                consumer(event)
            except Exception as err:  # a broken face must not stop the engine or lose results
                self._consumers.remove(consumer)
                self.consumer_errors.append(f"{type(err).__name__}: {err}")

    def run(self) -> Any:
        """Run the queue in the calling thread; returns the engine's RunResult with the run's final status.

        Raises :class:`engine.rundir.store.StorageError` (one line: the file and the OS error) when a write to
        the run directory failed: the run stopped there, and what finished before is on disk for ``--resume``.
        """
        from engine.run.runner import run_queue  # torch and the models load here, not at import

        names = tuple(e.name for e in self.spec.experiments)
        self.emit(
            ev.RunStarted(
                run_dir=str(self.run_dir), config_path=self.store.config_path, experiments=names, resumed=self.resumed
            )
        )
        completed = self.store.completed
        try:
            result = run_queue(
                self.spec,
                self.emit,
                self.steering,
                completed=completed or None,
                models=self.models,
                log_dir=self.run_dir,
            )
        except BaseException as err:
            self.store.error = f"{type(err).__name__}: {err}"
            status = ev.INTERRUPTED if isinstance(err, KeyboardInterrupt) else ev.FAILED
            self._finish(status)
            raise
        status = result.status
        if status == ev.DONE and any(row["status"] == ev.FAILED for row in self.store.rows()):
            status = ev.FAILED
        self._finish(status)
        if self.store.fault is not None:
            raise self.store.fault
        if dataclasses.is_dataclass(result) and status != result.status:
            result = dataclasses.replace(result, status=status)
        return result

    def _finish(self, status: str) -> None:
        try:
            self.emit(ev.RunFinished(status=status, run_dir=str(self.run_dir), best=self.store.results()["best"]))
        finally:
            self.store.close()
