"""What the dashboard knows about the run, rebuilt from engine events.

Plain Python, no Textual: the app folds every event into a :class:`RunState`
(cheap, in order, never dropped) and the widgets render from it on a timer,
so a fast engine costs the UI a list append per step, not a repaint.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from engine import events as ev
from engine.results import Row, best_names, result_row
from engine.spec import Experiment, Spec
from embopt_tui.cluster import WORKER_EVENTS, Cluster

Z_HISTORY = 6  # distinct decodes of z kept for the "how z changed" list


@dataclass
class ExperimentView:
    name: str
    status: str = ev.PENDING
    spec: Experiment | None = None
    total: int = 0
    step: int = 0
    sims: list[float] = field(default_factory=list)
    loss: float | None = None
    norm: float | None = None
    steps_per_s: float | None = None
    init_sim: float | None = None
    oracle_sim: float | None = None
    targets: tuple[str, ...] = ()
    decoded: ev.Decoded | None = None
    z_history: list[tuple[int, str]] = field(default_factory=list)
    result: dict[str, Any] | None = None

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

    def row(self, spec: Spec | None) -> dict[str, Any]:
        """The results.json row: the saved one once finished, else one built from what the run shows so far."""
        if self.result is not None:
            return self.result
        e = self.spec
        if e is None or spec is None or e.story not in spec.stories:
            return {"name": self.name, "status": self.status}
        trajectory = [self.init_sim, *self.sims] if self.sims and self.init_sim is not None else []
        live = Row(e, self.total or e.steps, self.status, trajectory, self.init_sim, self.oracle_sim)
        live.decoded_z = self.decoded.z_text if self.decoded is not None else None
        out = result_row(e, spec.story_of(e), self.status, live)
        out.pop("z", None)
        out["steps_done"], out["best"] = self.step, False
        return out


@dataclass
class RunState:
    config_path: str
    backend: str = ""
    device: str = ""
    loading_stage: str = "starting"
    loading_fraction: float = 0.0
    ready: bool = False
    load_error: str | None = None
    run_dir: str | None = None
    paused: bool = False
    finished: str | None = None  # RunFinished.status once the queue is over
    bank: ev.BankLoading | None = None  # the sentence bank being encoded, until it is ready
    best: frozenset[str] = frozenset()  # the best experiment of each story, once the run has ended
    experiments: dict[str, ExperimentView] = field(default_factory=dict)
    spec: Spec | None = None
    cluster: Cluster = field(default_factory=Cluster)  # the Ray workers (ray executor only)

    @classmethod
    def from_spec(cls, config_path: str, spec: Spec | None) -> RunState:
        state = cls(config_path=config_path)
        if spec is not None:
            state.backend = spec.backend.kind
            state.device = spec.backend.device
            state.set_spec(spec)
        return state

    def add_finished(self, rows: list[dict[str, Any]]) -> None:
        """Results an earlier run already saved (``--resume``): the engine does not announce them again."""
        for row in rows:
            if row.get("status") in (ev.DONE, ev.FAILED, ev.SKIPPED) and row.get("name"):
                x = self._get(str(row["name"]))
                x.status, x.result = row["status"], dict(row)
                sims = [float(v) for v in row.get("trajectory") or [] if isinstance(v, (int, float))]
                done = int(row.get("steps_done") or 0)
                x.sims = sims[1:] if len(sims) == done + 1 else sims  # the trajectory starts at the init sim
                x.step = x.total = done or len(x.sims)
                x.init_sim, x.oracle_sim = row.get("init_sim"), row.get("oracle_sim")
                x.targets = tuple(row.get("targets") or ())

    def set_spec(self, spec: Spec) -> None:
        """Attach experiment definitions (for details); pending ones follow the file."""
        self.spec = spec
        by_name = {e.name: e for e in spec.experiments}
        for name, experiment in by_name.items():
            self.experiments.setdefault(name, ExperimentView(name)).spec = experiment

    @property
    def running(self) -> list[ExperimentView]:
        return [x for x in self.experiments.values() if x.status == ev.RUNNING]

    @property
    def results(self) -> list[dict[str, Any]]:
        return [x.result for x in self.experiments.values() if x.result is not None]

    def rows(self) -> list[dict[str, Any]]:
        """Every experiment's row in queue order: finished, running (live similarity) and pending."""
        return [x.row(self.spec) for x in self.experiments.values()]

    def counts(self) -> Counter[str]:
        """How many experiments are in each status."""
        return Counter(x.status for x in self.experiments.values())

    def apply(self, event: ev.Event) -> None:
        """Fold one engine event into the state."""
        if isinstance(event, ev.BankLoading):
            self.bank = event if event.done < event.total else None
        elif isinstance(event, ev.Step):
            x = self._get(event.name)
            x.step, x.total = event.step, event.total
            x.sims.append(event.sim)
            x.loss, x.norm, x.steps_per_s = event.loss, event.norm, event.steps_per_s
        elif isinstance(event, ev.Decoded):
            x = self._get(event.name)
            x.decoded = event
            if not x.z_history or x.z_history[-1][1] != event.z_text:
                x.z_history.append((event.step, event.z_text))
                del x.z_history[:-Z_HISTORY]
        elif isinstance(event, ev.ExperimentStarted):
            x = self._get(event.name)
            x.status, x.total, x.step = ev.RUNNING, event.steps, 0
            x.sims.clear()
            x.z_history.clear()
            x.decoded, x.result = None, None
            x.init_sim, x.oracle_sim, x.targets = event.init_sim, event.oracle_sim, event.targets
        elif isinstance(event, ev.ExperimentFinished):
            x = self._get(event.name)
            x.status, x.result = event.status, dict(event.result)
            self.cluster.finished(event.name)
            if x.oracle_sim is None:
                x.oracle_sim = event.result.get("oracle_sim")
            if x.init_sim is None:
                x.init_sim = event.result.get("init_sim")
        elif isinstance(event, ev.QueueChanged):
            old = self.experiments
            self.experiments = {n: old.get(n) or ExperimentView(n) for n in event.names}
            for name, status in zip(event.names, event.statuses):
                self.experiments[name].status = status
        elif isinstance(event, ev.BackendLoading):
            self.loading_stage, self.loading_fraction = event.stage, event.fraction
        elif isinstance(event, ev.BackendReady):
            self.ready, self.backend, self.device = True, event.backend, event.device
            self.loading_fraction = 1.0
        elif isinstance(event, ev.BackendFailed):
            self.load_error = event.error
        elif isinstance(event, ev.RunStarted):
            self.run_dir = event.run_dir
            for name in event.experiments:
                self._get(name)
        elif isinstance(event, ev.RunFinished):
            self.finished, self.best = event.status, best_names(event.best)
            self.run_dir = event.run_dir
        elif isinstance(event, ev.Paused):
            self.paused = event.paused
        elif isinstance(event, WORKER_EVENTS):
            self.cluster.apply(event)

    def _get(self, name: str) -> ExperimentView:
        x = self.experiments.get(name)
        if x is None:
            x = self.experiments[name] = ExperimentView(name)
        return x
