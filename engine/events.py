"""Events the engine emits while it runs a queue.

Small, frozen and JSON-serialisable: the run directory appends each one to
``events.jsonl`` (that file is what ``--resume`` rebuilds a killed run from),
the dashboard turns them into Textual messages and the headless mode prints
them. Consumers keep their own history; the engine never waits on one.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

# Experiment statuses, in the order a queue moves through them.
PENDING = "pending"
RUNNING = "running"
DONE = "done"
FAILED = "failed"
INTERRUPTED = "interrupted"
SKIPPED = "skipped"
STATUSES = (PENDING, RUNNING, DONE, FAILED, INTERRUPTED, SKIPPED)


@dataclass(frozen=True)
class Event:
    """Base class: every event carries the wall-clock time it was made."""

    kind: ClassVar[str] = "event"
    time: float = field(default_factory=time.time, kw_only=True)

    def to_json(self) -> dict[str, Any]:
        # What dataclasses.asdict gives for these flat events, without its recursion: every step of every
        # experiment passes here (twice on the ray executor), and asdict was most of the cost.
        out: dict[str, Any] = {"type": self.kind}
        for name in _field_names(type(self)):
            value = getattr(self, name)
            out[name] = copy.deepcopy(value) if isinstance(value, (dict, list)) else value
        return out


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "run_started"
    run_dir: str
    config_path: str
    experiments: tuple[str, ...]
    resumed: bool = False


@dataclass(frozen=True)
class BackendLoading(Event):
    """Progress while models load: ``fraction`` in [0, 1]."""

    kind: ClassVar[str] = "backend_loading"
    stage: str
    fraction: float


@dataclass(frozen=True)
class BackendReady(Event):
    kind: ClassVar[str] = "backend_ready"
    backend: str
    device: str
    dim: int
    reference_norm: float
    seconds: float
    predictor: str | None = None  # the predictor directory loaded (for a hub id: its cache snapshot)
    predictor_revision: str | None = None  # commit hash of that snapshot (hub ids only)
    fluency: str | None = None  # the fluency model's directory (for a hub id: its cache snapshot); None: none
    fluency_revision: str | None = None


@dataclass(frozen=True)
class BackendFailed(Event):
    kind: ClassVar[str] = "backend_failed"
    error: str


@dataclass(frozen=True)
class BankLoading(Event):
    """A sentence bank being encoded (``done`` of ``total`` sentences), or ready (``done == total``)."""

    kind: ClassVar[str] = "bank_loading"
    bank: str
    done: int
    total: int
    cached: bool = False  # ready: read from the cache, nothing encoded
    uncached: str | None = None  # ready: why it could not be cached (a full disk): it is held in memory


@dataclass(frozen=True)
class StoryChecked(Event):
    """A story's own sentences through encode -> decode, once per run: how many come back exactly, how close.

    Most not coming back says the models do not know this text: every score on this story may mean little.
    """

    kind: ClassVar[str] = "story_checked"
    story: str
    sentences: int
    exact: int  # sentences whose decode is the sentence itself
    mean_sim: float  # mean cosine of E(s) with E(D(E(s)))

    @property
    def out_of_domain(self) -> bool:
        return 2 * self.exact < self.sentences


@dataclass(frozen=True)
class BatchLimit(Event):
    """How many experiments a batch of this kind may hold on this device, and why (engine.run.sizing)."""

    kind: ClassVar[str] = "batch_limit"
    rows: int
    reason: str


@dataclass(frozen=True)
class QueueChanged(Event):
    """The whole queue after a change (start, live reload, status change)."""

    kind: ClassVar[str] = "queue_changed"
    names: tuple[str, ...]
    statuses: tuple[str, ...]


@dataclass(frozen=True)
class BatchStarted(Event):
    """A batch was handed to run: its experiments are running (their ExperimentStarted follows once it starts).

    One per batch, naming only its experiments: what finishes says so in its
    own ExperimentFinished, so no event grows with the queue's length.
    """

    kind: ClassVar[str] = "batch_started"
    names: tuple[str, ...]


@dataclass(frozen=True)
class ConfigRejected(Event):
    """A live edit of the config was invalid; the queue keeps the last valid one."""

    kind: ClassVar[str] = "config_rejected"
    error: str


@dataclass(frozen=True)
class ConfigApplied(Event):
    """A live edit reached the queue: ``text`` is the config the rest of the run follows (and --resume continues)."""

    kind: ClassVar[str] = "config_applied"
    text: str


@dataclass(frozen=True)
class ExperimentStarted(Event):
    kind: ClassVar[str] = "experiment_started"
    name: str
    steps: int
    batch: tuple[str, ...]  # every experiment running in the same batch
    init_sim: float
    oracle_sim: float
    targets: tuple[str, ...]  # the target sentences, in score order


@dataclass(frozen=True)
class Step(Event):
    """Metrics after optimiser step ``step`` (1-based) of ``total``."""

    kind: ClassVar[str] = "step"
    name: str
    step: int
    total: int
    sim: float  # mean over targets
    sims: tuple[float, ...]  # per target
    loss: float
    norm: float
    steps_per_s: float


@dataclass(frozen=True)
class Decoded(Event):
    kind: ClassVar[str] = "decoded"
    name: str
    step: int
    z_text: str
    predictions: tuple[str, ...]
    targets: tuple[str, ...]
    exact: tuple[bool, ...]
    text: str | None = None  # the best real sentence found so far (the honest score's sentence)
    text_sim: float | None = None  # its score in z's place
    text_nll: float | None = None  # its fluency: mean NLL per token under the fluency model, when there is one


@dataclass(frozen=True)
class ExperimentFinished(Event):
    """``result`` is the experiment's row of ``results.json``."""

    kind: ClassVar[str] = "experiment_finished"
    name: str
    status: str
    result: dict[str, Any]


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "run_finished"
    status: str  # done | failed | interrupted
    run_dir: str
    best: dict[str, str] = field(default_factory=dict)  # story -> its best experiment


@dataclass(frozen=True)
class Paused(Event):
    kind: ClassVar[str] = "paused"
    paused: bool


@dataclass(frozen=True)
class WorkerStarted(Event):
    """A worker of a Ray cluster loaded the models and takes batches (``workers``: how many are up now)."""

    kind: ClassVar[str] = "worker_started"
    worker: str  # "w1", "w2", ...; a replacement gets a new name
    host: str
    pid: int
    gpus: tuple[str, ...]  # the GPU ids Ray gave it (CUDA_VISIBLE_DEVICES); empty on CPU
    device: str
    workers: int


@dataclass(frozen=True)
class WorkerDied(Event):
    """A worker died; ``retry``: its batch runs again from its start (attempt ``attempt`` of ``max_attempts``)."""

    kind: ClassVar[str] = "worker_died"
    worker: str
    error: str
    batch: tuple[str, ...]  # the experiments it was running (finished ones excluded)
    retry: bool
    attempt: int
    max_attempts: int
    workers: int


@dataclass(frozen=True)
class BatchAssigned(Event):
    """The driver handed a batch to a worker (attempt 1, or a retry after a worker died)."""

    kind: ClassVar[str] = "batch_assigned"
    worker: str
    batch: tuple[str, ...]
    gpus: tuple[str, ...] = ()
    attempt: int = 1


EVENT_TYPES: dict[str, type[Event]] = {
    cls.kind: cls
    for cls in (
        RunStarted,
        BackendLoading,
        BackendReady,
        BackendFailed,
        BankLoading,
        StoryChecked,
        BatchLimit,
        QueueChanged,
        BatchStarted,
        ConfigRejected,
        ConfigApplied,
        ExperimentStarted,
        Step,
        Decoded,
        ExperimentFinished,
        RunFinished,
        Paused,
        WorkerStarted,
        WorkerDied,
        BatchAssigned,
    )
}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# What each annotation of an event field accepts: from JSON (lists), or from a Ray worker's stream (tuples).
_ACCEPTS: dict[str, Callable[[Any], bool]] = {
    "str": lambda v: isinstance(v, str),
    "str | None": lambda v: v is None or isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "float": _number,
    "float | None": lambda v: v is None or _number(v),
    "bool": lambda v: isinstance(v, bool),
    "tuple[str, ...]": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, str) for x in v),
    "tuple[float, ...]": lambda v: isinstance(v, (list, tuple)) and all(_number(x) for x in v),
    "tuple[bool, ...]": lambda v: isinstance(v, (list, tuple)) and all(isinstance(x, bool) for x in v),
    "dict[str, Any]": lambda v: isinstance(v, dict),
    "dict[str, str]": lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()),
}


def event_from_json(data: dict[str, Any]) -> Event:
    """Inverse of :meth:`Event.to_json` (lists come back as tuples).

    Raises KeyError, TypeError or ValueError for anything :meth:`Event.to_json`
    could not have written: an unknown type, a missing field, a value of the wrong type.
    """
    if not isinstance(data, dict):
        raise TypeError(f"an event is a JSON object, not {type(data).__name__}")
    data = dict(data)
    cls = EVENT_TYPES[data.pop("type")]
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue  # a field this event had no value for takes its default (or the constructor says it is missing)
        value = data[f.name]
        accepts = _ACCEPTS.get(str(f.type))
        if accepts is not None and not accepts(value):
            raise TypeError(f"{cls.kind}.{f.name}: {value!r:.40} is not a {f.type}")
        kwargs[f.name] = tuple(value) if isinstance(value, list) else value
    return cls(**kwargs)
