"""The result row of one experiment: its schema, the statuses that end it, and "best".

One place for what every face and file shows: ``results.json`` rows, the
``ExperimentFinished`` events, the report's tables and the dashboard all take
their rows from :func:`result_row` and their best marks from :func:`best_by_story`.
Plain Python (no torch): ``engine.rundir.report`` and the CLI's start-up import it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.events import DONE, FAILED, INTERRUPTED, PENDING, SKIPPED

if TYPE_CHECKING:
    from engine.spec import Experiment, Story

# Statuses an experiment keeps once reached: a resume runs none of these again
# (a skipped experiment was skipped on purpose). Interrupted ones run again.
FINISHED = (DONE, FAILED, SKIPPED)
# Statuses an ExperimentFinished event carries.
ENDED = FINISHED + (INTERRUPTED,)

# Field order of a results row; ``z`` and ``best_z`` live in the embeddings files instead.
FIELDS = (
    "name",
    "repeat_of",
    "init_text",
    "story",
    "method",
    "lr",
    "steps",
    "steps_done",
    "optimizer",
    "objective",
    "norm",
    "decode_every",
    "beam_size",
    "seed",
    "bank",
    "options",
    "optimize",
    "context",
    "status",
    "init_sim",
    "final_sim",
    "best_sim",
    "best_step",
    "improvement",
    "init_loss",
    "final_loss",
    "best_loss",
    "oracle_sim",
    "oracle_loss",
    "roundtrip_sim",
    "text_sim",
    "text_nll",
    "oracle_nll",
    "text",
    "text_exact_match",
    "scored",
    "top",
    "front",
    "search_trace",
    "decoded_z",
    "decoded_predictions",
    "targets",
    "exact_match",
    "best",
    "seconds",
    "error",
    "trajectory",
)


@dataclass
class Row:
    """One experiment's record while its batch runs."""

    experiment: Experiment
    steps: int
    status: str = PENDING
    trajectory: list[float] = field(default_factory=list)  # mean similarity at step 0, 1, ...
    losses: list[float] = field(default_factory=list)  # the objective after step 1, 2, ... (step 0: init_loss)
    init_sim: float | None = None
    init_loss: float | None = None
    oracle_sim: float | None = None
    oracle_loss: float | None = None  # the objective with the true sentence in z's place
    oracle_nll: float | None = None  # the true sentence's fluency: mean NLL per token under the fluency model
    start_text: str | None = None  # the text z started from, when not init as written (init = "bank")
    roundtrip_sim: float | None = None
    decoded_z: str | None = None
    decoded_predictions: list[str] = field(default_factory=list)
    exact_match: list[bool] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    z: list[float] | None = None
    best_z: list[float] | None = None  # z at best_step, when it is not the final z
    # The honest score (engine.methods.batch): the best real sentence found and its score in z's place.
    text: str | None = None
    text_sim: float | None = None
    text_nll: float | None = None  # its fluency: mean NLL per token under the fluency model (none without one)
    text_exact_match: list[bool] = field(default_factory=list)
    scored: int = 0
    top: list[dict[str, Any]] | None = None  # discrete methods: [{"text", "sim", "loss"}], best first
    front: list[dict[str, Any]] | None = None  # fluent_swap: [{"text", "sim", "nll"}] no candidate beats on both
    search_trace: list[list[float]] = field(
        default_factory=list
    )  # discrete methods: [scored so far, best sim] per step
    bank_scored: int = 0  # bank sentences scored before the method's own search began (token_swap's init = "bank")

    @property
    def steps_done(self) -> int:
        return max(0, len(self.trajectory) - 1)

    def record(self, sim: float, loss: float) -> None:
        """The similarity and objective after one more step."""
        self.trajectory.append(sim)
        self.losses.append(loss)


def settings(experiment: Experiment, story: Story) -> dict[str, Any]:
    """What the experiment was asked to do: the row's fields known before it runs."""
    return {
        "name": experiment.name,
        "repeat_of": experiment.repeat_of,
        "init_text": experiment.init,
        "story": experiment.story,
        "lr": experiment.lr,
        "steps": experiment.steps,
        "optimizer": experiment.optimizer,
        "objective": experiment.objective.label,
        "norm": experiment.norm,
        "decode_every": experiment.decode_every,
        "beam_size": experiment.beam_size,
        "seed": experiment.seed,
        "method": experiment.method,
        "bank": experiment.bank,
        "options": dataclasses.asdict(experiment.options),
        "optimize": story.optimize,
        "context": list(story.context),
        "targets": [story.sentences[t] for t in story.targets],
    }


def result_row(experiment: Experiment, story: Story, status: str = PENDING, row: Row | None = None) -> dict[str, Any]:
    """The experiment's row of ``results.json`` (metrics None where not measured)."""
    traj = row.trajectory if row else []
    best = max(range(len(traj)), key=traj.__getitem__) if traj else None
    init = row.init_sim if row else None
    final = traj[-1] if traj and status != FAILED else None
    losses = ([row.init_loss] if row.init_loss is not None else []) + row.losses if row else []
    out = {f: None for f in FIELDS if f != "best"}  # "best" compares rows: the store marks it
    out.update(settings(experiment, story))
    out.update(
        status=status,
        steps_done=row.steps_done if row else 0,
        init_sim=init,
        final_sim=final,
        best_sim=traj[best] if best is not None else None,
        best_step=best,
        improvement=final - init if final is not None and init is not None else None,
        init_loss=row.init_loss if row else None,
        final_loss=losses[-1] if losses and status != FAILED else None,
        best_loss=min(losses) if losses else None,
        oracle_sim=row.oracle_sim if row else None,
        oracle_loss=row.oracle_loss if row else None,
        roundtrip_sim=row.roundtrip_sim if row else None,
        text=row.text if row else None,
        text_sim=row.text_sim if row else None,
        text_nll=row.text_nll if row else None,
        oracle_nll=row.oracle_nll if row else None,
        text_exact_match=list(row.text_exact_match) if row else [],
        scored=row.scored if row else 0,
        top=row.top if row else None,
        front=row.front if row else None,
        search_trace=list(row.search_trace) if row else [],
        decoded_z=row.decoded_z if row else None,
        decoded_predictions=list(row.decoded_predictions) if row else [],
        exact_match=list(row.exact_match) if row else [],
        seconds=round(row.seconds, 3) if row else 0.0,
        error=row.error if row else None,
        trajectory=list(traj),
        z=row.z if row else None,
        best_z=row.best_z if row else None,
    )
    if row is not None and row.start_text is not None:
        out["init_text"] = row.start_text
    return out


RANKINGS = ("text_sim", "final_sim")  # what "best" means: the best real sentence (default), or the continuous z


def best_by_story(rows: Iterable[Mapping[str, Any]], rank_by: str = "text_sim") -> dict[str, str]:
    """Per story, the done experiment with the highest ``rank_by``: the honest score by default.

    Only experiments of one story are compared: similarities to different
    targets do not measure the same thing. Ties go to the earlier row.
    """
    best: dict[str, tuple[float, str]] = {}
    for row in rows:
        score = row.get(rank_by)
        if row.get("status") != DONE or not _is_number(score) or score != score:
            continue
        story = str(row.get("story") or "")
        if story not in best or score > best[story][0]:
            best[story] = (float(score), str(row["name"]))
    return {story: name for story, (_, name) in best.items()}


def best_names(best: Any) -> frozenset[str]:
    """The names a results file's ``best`` marks: a {story: name} object (or, from older runs, one name)."""
    if isinstance(best, Mapping):
        return frozenset(str(v) for v in best.values())
    if isinstance(best, str):
        return frozenset((best,))
    return frozenset()


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
