"""What the dashboard knows about the run: the engine's one fold of events, plus the config it shows from.

The app folds every event into a :class:`RunState` (cheap, in order, never
dropped: :class:`engine.rundir.fold.RunProgress` does it) and the widgets
render from it on a timer, so a fast engine costs the UI a list append per
step, not a repaint. What this adds is the dashboard's own: the spec whose
settings the panels show, and rows for experiments that have not finished.

Every text enters the state through :func:`engine.text.printable` (events,
saved rows, the spec's experiments, the rows built from them), so no panel
can put a story's or a decode's control characters on the terminal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from engine import events as ev
from engine.results import RANKINGS, Row, best_by_story, result_row
from engine.rundir.fold import ExperimentProgress, RunProgress
from engine.spec import Spec
from engine.text import printable, printable_data

ExperimentView = ExperimentProgress  # what a panel shows of one experiment


@dataclass
class RunState(RunProgress):
    config_path: str = ""
    spec: Spec | None = None

    @classmethod
    def from_spec(cls, config_path: str, spec: Spec | None) -> RunState:
        state = cls(config_path=config_path)
        if spec is not None:
            state.set_spec(spec)
        return state

    def set_spec(self, spec: Spec) -> None:
        """Attach experiment definitions (for details); pending ones follow the file."""
        self.spec = spec
        self.attach(dataclasses.replace(e, name=printable(e.name), init=printable(e.init)) for e in spec.experiments)

    def apply(self, event: ev.Event) -> None:
        if not isinstance(event, ev.Step):  # a step holds a name the parser checked, and numbers
            texts = {f.name: printable_data(getattr(event, f.name)) for f in dataclasses.fields(event)}
            event = dataclasses.replace(event, **texts)
        super().apply(event)

    def add_finished(self, rows: Iterable[Mapping[str, Any]]) -> None:
        super().add_finished(printable_data([dict(row) for row in rows]))

    @property
    def backend_name(self) -> str:
        """The backend and device in the header: the config's until the engine reports what it loaded."""
        if self.backend is not None:
            return f"{self.backend.backend} · {self.backend.device}"
        if self.spec is not None:
            return f"{self.spec.backend.kind} · {self.spec.backend.device}"
        return "? · ?"

    @property
    def best_names(self) -> frozenset[str]:
        """The best experiment of each story: as the run announced it at its end, else by the rows so far."""
        rank_by = self.spec.rank_by if self.spec is not None else RANKINGS[0]
        return frozenset((self.best or best_by_story(self.results, rank_by)).values())

    def rows(self) -> list[dict[str, Any]]:
        """Every experiment's row in queue order: finished, running (live similarity) and pending."""
        return [self.row(x) for x in self.experiments.values()]

    def row(self, x: ExperimentView) -> dict[str, Any]:
        """The results.json row: the saved one once finished, else one built from what the run shows so far."""
        if x.result is not None:
            return x.result
        e, spec = x.experiment, self.spec
        if e is None or spec is None or e.story not in spec.stories:
            return {"name": x.name, "status": x.status}
        trajectory = [x.init_sim, *x.sims] if x.sims and x.init_sim is not None else []
        live = Row(e, x.total or e.steps, x.status, trajectory, init_sim=x.init_sim, oracle_sim=x.oracle_sim)
        live.decoded_z = x.decoded.z_text if x.decoded is not None else None
        out = result_row(e, spec.story_of(e), x.status, live)
        out.pop("z", None)
        out["steps_done"], out["best"] = x.step, False
        return printable_data(out)
