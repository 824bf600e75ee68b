"""What a run's events say so far: the one fold of the engine's events that every consumer reads.

The run directory (:mod:`engine.rundir.store`), the dashboard's state and both
headless views apply each event to a :class:`RunProgress`, in order, and read
what they save or show off it, so they cannot disagree about a run. Plain
Python: no torch, no face.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine import events as ev
from engine.results import FINISHED

Z_HISTORY = 6  # distinct decodes of z kept for the "how z changed" list


@dataclass
class ExperimentProgress:
    """One experiment as its events tell it."""

    name: str
    status: str = ev.PENDING
    experiment: Any = None  # its engine.spec.Experiment, when a spec is attached (RunProgress.attach)
    total: int = 0
    step: int = 0
    sims: list[float] = field(default_factory=list)  # mean similarity after each step
    loss: float | None = None
    norm: float | None = None
    steps_per_s: float | None = None
    init_sim: float | None = None
    oracle_sim: float | None = None
    targets: tuple[str, ...] = ()
    decoded: ev.Decoded | None = None  # the latest decode
    z_history: list[tuple[int, str]] = field(default_factory=list)  # (step, text of z), distinct, latest last
    result: dict[str, Any] | None = None  # its results.json row once it ended (without z)
    z: list[float] | None = None  # its final z once it ended
    best_z: list[float] | None = None  # its z at best_step, where that is not the final z

    @property
    def sim(self) -> float | None:
        """Final similarity once finished, else the latest one."""
        if self.result is not None and self.result.get("final_sim") is not None:
            return float(self.result["final_sim"])
        return self.sims[-1] if self.sims else None

    @property
    def text_sim(self) -> float | None:
        """The honest score: the best real sentence's score in z's place (final once finished, else so far)."""
        if self.result is not None and self.result.get("text_sim") is not None:
            return float(self.result["text_sim"])
        return self.decoded.text_sim if self.decoded is not None else None

    @property
    def text_nll(self) -> float | None:
        """The best sentence's fluency (mean NLL per token), when the backend has a fluency model."""
        if self.result is not None and self.result.get("text_nll") is not None:
            return float(self.result["text_nll"])
        return self.decoded.text_nll if self.decoded is not None else None

    @property
    def text(self) -> str | None:
        if self.result is not None and self.result.get("text"):
            return str(self.result["text"])
        return self.decoded.text if self.decoded is not None else None

    @property
    def eta_s(self) -> float | None:
        """Seconds left at the engine's rate (which leaves paused time out); None when not running."""
        if not self.steps_per_s or self.status != ev.RUNNING:
            return None
        return (self.total - self.step) / self.steps_per_s

    def start(self, event: ev.ExperimentStarted) -> None:
        self.status, self.total, self.step = ev.RUNNING, event.steps, 0
        self.sims.clear()
        self.z_history.clear()
        self.decoded, self.result, self.z = None, None, None
        self.init_sim, self.oracle_sim, self.targets = event.init_sim, event.oracle_sim, event.targets

    def finish(self, status: str, result: Mapping[str, Any]) -> None:
        z = result.get("z")
        z = [float(v) for v in z] if z is not None else self.z  # a damaged z raises here, before anything changed
        self.status = status
        self.result = {k: v for k, v in result.items() if k not in ("z", "best_z")}
        self.result.setdefault("name", self.name)
        self.result["status"] = status
        self.z = z
        best_z = result.get("best_z")
        self.best_z = [float(v) for v in best_z] if best_z is not None else self.best_z
        if self.oracle_sim is None:
            self.oracle_sim = result.get("oracle_sim")
        if self.init_sim is None:
            self.init_sim = result.get("init_sim")


@dataclass
class Workers:
    """The Ray workers of a run: who is up, what each runs, who died (the ray executor's events)."""

    gpus: dict[str, tuple[str, ...]] = field(default_factory=dict)  # live worker -> its GPUs
    running: dict[str, tuple[str, ...]] = field(default_factory=dict)  # worker -> the batch it runs
    died: list[str] = field(default_factory=list)  # "w1 died (a, c retry 2/3)", the latest three
    size: int = 0

    def apply(self, event: ev.Event) -> None:
        if isinstance(event, ev.WorkerStarted):
            self.gpus[event.worker] = event.gpus
            self.size = event.workers
        elif isinstance(event, ev.BatchAssigned):
            self.running[event.worker] = event.batch
        elif isinstance(event, ev.WorkerDied):
            self.gpus.pop(event.worker, None)
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


WORKER_EVENTS = (ev.WorkerStarted, ev.WorkerDied, ev.BatchAssigned)


@dataclass
class RunProgress:
    """A run as its events tell it, folded by :meth:`apply`."""

    run_dir: str | None = None
    experiments: dict[str, ExperimentProgress] = field(default_factory=dict)  # in queue order
    backend: ev.BackendReady | None = None
    loading: ev.BackendLoading | None = None  # the latest loading progress, until the backend is ready
    load_error: str | None = None
    bank: ev.BankLoading | None = None  # the sentence bank being encoded, until it is ready
    paused: bool = False
    finished: str | None = None  # RunFinished.status once the run is over
    best: dict[str, str] = field(default_factory=dict)  # story -> its best experiment, once the run is over
    config_text: str | None = None  # the config the queue follows since the latest live edit
    stories: dict[str, ev.StoryChecked] = field(default_factory=dict)  # each story's round trip, once checked
    workers: Workers = field(default_factory=Workers)

    # --- reading ----------------------------------------------------------------
    @property
    def running(self) -> list[ExperimentProgress]:
        return [x for x in self.experiments.values() if x.status == ev.RUNNING]

    @property
    def results(self) -> list[dict[str, Any]]:
        """The rows of the experiments that ended, in queue order."""
        return [x.result for x in self.experiments.values() if x.result is not None]

    def counts(self) -> Counter[str]:
        """How many experiments are in each status."""
        return Counter(x.status for x in self.experiments.values())

    # --- folding ----------------------------------------------------------------
    def experiment(self, name: str) -> ExperimentProgress:
        x = self.experiments.get(name)
        if x is None:
            x = self.experiments[name] = ExperimentProgress(name)
        return x

    def attach(self, experiments: Iterable[Any]) -> None:
        """The experiments' settings (engine.spec.Experiment) from a spec, by name."""
        for experiment in experiments:
            self.experiment(experiment.name).experiment = experiment

    def add_finished(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Rows an earlier run of this directory saved: ``--resume`` does not announce them again."""
        for row in rows:
            if row.get("status") in FINISHED and row.get("name"):
                x = self.experiment(str(row["name"]))
                x.finish(str(row["status"]), row)
                sims = [float(v) for v in row.get("trajectory") or [] if isinstance(v, (int, float))]
                done = int(row.get("steps_done") or 0)
                x.sims = sims[1:] if len(sims) == done + 1 else sims  # the trajectory starts at the init sim
                x.step = x.total = done or len(x.sims)
                x.targets = tuple(row.get("targets") or ())

    def apply(self, event: ev.Event) -> None:
        """Fold one engine event in."""
        if isinstance(event, ev.Step):
            x = self.experiment(event.name)
            x.step, x.total = event.step, event.total
            x.sims.append(event.sim)
            x.loss, x.norm, x.steps_per_s = event.loss, event.norm, event.steps_per_s
        elif isinstance(event, ev.Decoded):
            x = self.experiment(event.name)
            x.decoded = event
            if not x.z_history or x.z_history[-1][1] != event.z_text:
                x.z_history.append((event.step, event.z_text))
                del x.z_history[:-Z_HISTORY]
        elif isinstance(event, ev.ExperimentStarted):
            self.experiment(event.name).start(event)
        elif isinstance(event, ev.ExperimentFinished):
            self.experiment(event.name).finish(event.status, event.result)
            self.workers.finished(event.name)
        elif isinstance(event, ev.BatchStarted):
            for name in event.names:
                self.experiment(name).status = ev.RUNNING
        elif isinstance(event, ev.QueueChanged):
            self._reorder(event.names)
            for name, status in zip(event.names, event.statuses):
                self.experiments[name].status = status
        elif isinstance(event, ev.BankLoading):
            self.bank = event if event.done < event.total else None
        elif isinstance(event, ev.BackendLoading):
            self.loading = event
        elif isinstance(event, ev.BackendReady):
            self.backend, self.loading = event, None
        elif isinstance(event, ev.BackendFailed):
            self.load_error = event.error
        elif isinstance(event, ev.ConfigApplied):
            self.config_text = event.text
        elif isinstance(event, ev.StoryChecked):
            self.stories[event.story] = event
        elif isinstance(event, ev.RunStarted):
            self.run_dir, self.finished, self.paused = event.run_dir, None, False
            for name in event.experiments:
                x = self.experiment(name)
                if x.status not in FINISHED:  # what did not finish before runs again from its start
                    self.experiments[name] = ExperimentProgress(name, experiment=x.experiment)
        elif isinstance(event, ev.RunFinished):
            self.finished, self.best, self.run_dir = event.status, dict(event.best), event.run_dir
        elif isinstance(event, ev.Paused):
            self.paused = event.paused
        elif isinstance(event, WORKER_EVENTS):
            self.workers.apply(event)

    def _reorder(self, names: Iterable[str]) -> None:
        """Queue order from a QueueChanged; experiments it no longer lists (finished, then edited out) stay, last."""
        order = {name: self.experiment(name) for name in names}
        order.update((n, x) for n, x in self.experiments.items() if n not in order and x.result is not None)
        self.experiments = order
