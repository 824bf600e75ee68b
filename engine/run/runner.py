"""The queue: loads the backend, groups pending experiments into batches, runs
them through :func:`engine.run.batches.optimize_batch`, and answers the controls
(stop, pause, skip, live reload) between optimiser steps.

A batch is the first pending experiment plus every later pending one on the
same story (the backend is the spec's), at most :data:`MAX_BATCH` rows.

``norm = "reference"`` projects onto the mean L2 norm of real embeddings: the
story's sentences plus, on the mini backend, a fixed sample of the mini corpus
(:data:`CORPUS_SAMPLE` training sentences). Real SONAR ships no corpus, so
there it is the story alone; give a number (0.207 for TinyStories) to pin it.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

from engine import events as ev
from engine.models.predictor_dir import parse_hub_id
from engine.results import FINISHED, best_by_story, result_row
from engine.spec import Backend, Experiment, Spec

MAX_BATCH = 32
CORPUS_SAMPLE = 256  # real sentences whose mean norm, with the story's, is the "reference" norm (mini backend)
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class Models:
    """A loaded backend: embedding space, predictor and the norms of a real-sentence sample."""

    backend: Backend
    space: Any  # engine.models.space.EmbeddingSpace
    predictor: Any  # engine.models.predictor.SonarLLMPredictor
    corpus_norms: Any  # Tensor [N] (N may be 0): L2 norms of real sentence embeddings beyond the story
    seconds: float
    predictor_dir: str | None = None  # the directory loaded (a hub id's cache snapshot)
    predictor_revision: str | None = None  # commit hash of that snapshot, when it came from the hub


@dataclass(frozen=True)
class RunResult:
    status: str  # done | failed | interrupted
    experiments: tuple[dict[str, Any], ...]  # result rows in queue order (pending ones included)
    best: dict[str, str]  # story -> its best experiment (engine.results.best_by_story)


_models: dict[Backend, Models] = {}
_models_lock = threading.Lock()


def _corpus_sentences(backend: Backend) -> list[str]:
    """A fixed sample of the mini corpus (what the mini models were trained on); none for real SONAR."""
    if backend.kind != "mini":
        return []
    try:
        from engine.mini.corpus import DEFAULT_SEED, generate_corpus
    except ImportError:
        return []
    return generate_corpus(DEFAULT_SEED, 64).train_sentences()[:CORPUS_SAMPLE]


def _predictor_dir(backend: Backend) -> str:
    if backend.predictor is not None:
        return backend.predictor
    from engine.mini import PREDICTOR_DIR

    return str(PREDICTOR_DIR)


def _hub_id(backend: Backend) -> tuple[str, str | None] | None:
    """(repo, revision) when the predictor is a hub id: engine.spec makes every directory absolute, so a
    relative value of that form is one, whatever the working directory holds."""
    if backend.predictor is None or os.path.isabs(backend.predictor):
        return None
    return parse_hub_id(backend.predictor)


def load_models(backend: Backend, progress: Progress | None = None) -> Models:
    """Load (once per process and backend config) the space and predictor a spec's backend names."""
    with _models_lock:
        if backend in _models:
            return _models[backend]
        import torch

        from engine.models.predictor import load_predictor
        from engine.models.space import load_space, resolve_device, resolve_dtype

        report = progress or (lambda stage, fraction: None)
        start = time.perf_counter()
        device, dtype = resolve_device(backend.device), resolve_dtype(backend.dtype)
        hub_id, snapshot = _hub_id(backend), None
        if hub_id is not None:  # first: a missing download fails before the slow sonar import; its bytes get 0-40 %
            from engine.models.hub import fetch

            snapshot = fetch(*hub_id, progress=lambda s, f: report(s, 0.4 * f))
        low = 0.4 if snapshot else 0.0
        space = load_space(backend, device=device, dtype=dtype, progress=lambda s, f: report(s, low + (0.8 - low) * f))
        report("predictor", 0.85)
        directory = str(snapshot.path) if snapshot else _predictor_dir(backend)
        predictor = load_predictor(directory, device=device, dtype=dtype)
        predictor.requires_grad_(False)
        if predictor.config.embed_dim != space.dim:
            raise ValueError(
                f"{directory}: predictor embed_dim is {predictor.config.embed_dim}"
                f" but {backend.encoder} makes {space.dim}-d vectors"
            )
        report("reference norms", 0.95)
        sentences = _corpus_sentences(backend)
        norms = space.encode(sentences).float().norm(dim=1) if sentences else torch.zeros(0, device=device)
        revision = snapshot.revision if snapshot else None
        models = Models(backend, space, predictor, norms, time.perf_counter() - start, directory, revision)
        _models[backend] = models
        report("ready", 1.0)
        return models


class _Queue:
    """Names in queue order, each with its experiment (from the current spec), status and result."""

    def __init__(self, spec: Spec, completed: Mapping[str, dict[str, Any]]):
        self.spec = spec
        self.names = [e.name for e in spec.experiments]
        self.experiments: dict[str, Experiment] = {e.name: e for e in spec.experiments}
        self.results: dict[str, dict[str, Any]] = {}
        self.status: dict[str, str] = {name: ev.PENDING for name in self.names}
        for name in self.names:
            result = completed.get(name)
            if result is not None and result.get("status") in FINISHED:
                self.results[name] = dict(result)
                self.status[name] = result["status"]

    def event(self) -> ev.QueueChanged:
        return ev.QueueChanged(tuple(self.names), tuple(self.status[n] for n in self.names))

    def next_batch(self) -> list[Experiment]:
        pending = [self.experiments[n] for n in self.names if self.status[n] == ev.PENDING]
        if not pending:
            return []
        first = pending[0]
        same = [e for e in pending if (e.story, e.method, e.bank) == (first.story, first.method, first.bank)]
        return same[:MAX_BATCH]

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
        return best_by_story(self.rows())

    def finish(self, result: dict[str, Any], emit: Callable[[ev.Event], None]) -> None:
        name = result["name"]
        self.results[name], self.status[name] = result, result["status"]
        # A copy: consumers may take keys out (the store moves z to the embeddings file).
        emit(ev.ExperimentFinished(name, result["status"], dict(result)))
        emit(self.event())

    def skip_pending(self, names: Any, emit: Callable[[ev.Event], None]) -> None:
        """Pending experiments asked to be skipped end as skipped without running."""
        for name in self.names:
            if name in names and self.status[name] == ev.PENDING:
                experiment = self.experiments[name]
                self.finish(result_row(experiment, self.spec.story_of(experiment), ev.SKIPPED), emit)


class Controls:
    """Pause, live reload, stop and skip as the queue sees them: what every executor asks between steps."""

    def __init__(self, queue: _Queue, emit: Callable[[ev.Event], None], should_stop: Callable[[], bool], control: Any):
        self.queue, self.emit, self.should_stop, self.control = queue, emit, should_stop, control

    def stop_requested(self) -> bool:
        return self.should_stop() or (self.control is not None and self.control.should_stop())

    def reload(self) -> None:
        new_spec = self.control.take_spec() if self.control is not None else None
        if new_spec is not None:
            self.queue.reload(new_spec)
            self.emit(ev.ConfigApplied(new_spec.text))  # the run directory keeps it: --resume continues this queue
            self.emit(self.queue.event())

    def take_skip(self, running: frozenset[str]) -> frozenset[str] | None:
        """Skip requests: pending ones end as skipped here; returns the running names to skip, if any."""
        skip = self.control.take_skip() if self.control is not None else set()
        if not skip:
            return None
        self.queue.skip_pending(skip, self.emit)
        return running if None in skip else frozenset(running & skip)

    def between_steps(self, running: frozenset[str]) -> str | frozenset[str] | None:
        """The engine's only contact with its controller; blocks while paused.

        Returns "stop", the names of running experiments to skip, or None.
        """
        control = self.control
        if control is not None:
            self.reload()
            if control.paused and not self.stop_requested():
                self.emit(ev.Paused(True))
                while not control.wait_while_paused(0.1) and not self.stop_requested():
                    self.reload()  # edits made while paused show in the queue at once
                self.emit(ev.Paused(False))
                self.reload()
        if self.stop_requested():
            return "stop"
        return self.take_skip(running)


def run_queue(
    spec: Spec,
    emit: Callable[[ev.Event], None],
    should_stop: Callable[[], bool],
    *,
    control: Any = None,
    completed: Mapping[str, dict[str, Any]] | None = None,
    models: Models | None = None,
    log_dir: Path | None = None,
) -> RunResult:
    """Run every pending experiment of ``spec`` on its executor; see the module docstring and DESIGN.md.

    ``log_dir`` is where the ray executor writes its cluster's log (the run directory).
    """
    queue = _Queue(spec, completed or {})
    emit(queue.event())
    controls = Controls(queue, emit, should_stop, control)
    if spec.executor.kind == "ray":
        from engine.run.executors.ray import ClusterError, run_on_ray  # ray loads only for this executor

        try:
            stopped = run_on_ray(queue, controls, spec.executor, log_dir=log_dir)
        except ClusterError as err:  # nothing ran: pending experiments stay pending for --resume
            emit(ev.BackendFailed(str(err)))
            return RunResult(ev.FAILED, queue.rows(), queue.best())
    else:
        from engine.run.executors.inline import run_inline

        stopped = run_inline(queue, controls, models)
    rows = queue.rows()
    if stopped:
        status = ev.INTERRUPTED
    elif any(r["status"] == ev.FAILED for r in rows):
        status = ev.FAILED
    else:
        status = ev.DONE
    return RunResult(status, rows, queue.best())


def run_batch(
    batch: list[Experiment],
    spec: Spec,
    models: Models,
    banks: dict,
    *,
    emit: Callable[[ev.Event], None],
    on_finished: Callable[[dict[str, Any]], None],
    poll: Callable[[], str | frozenset[str] | None],
) -> None:
    """One batch with its bank, by :func:`engine.run.batches.optimize_batch`: every executor runs batches so."""
    from engine.run.batches import optimize_batch

    story = spec.story_of(batch[0])
    try:
        bank = _bank(batch[0].bank, spec, models, emit, banks)
    except Exception as err:  # an unreadable bank fails its batch; the queue goes on
        error = f"{type(err).__name__}: {err}".splitlines()[0]
        for experiment in batch:
            on_finished(dict(result_row(experiment, story, ev.FAILED), error=error))
        return
    optimize_batch(
        batch,
        story,
        models.space,
        models.predictor,
        emit=emit,
        on_finished=on_finished,
        poll=poll,
        corpus_norms=models.corpus_norms,
        bank=bank,
    )


THREADS_ENV = "EMBOPT_THREADS"  # torch intra-op threads; tests and shared machines set 1


def threads_from_env() -> int | None:
    """The thread count asked for by EMBOPT_THREADS; ValueError when it is not a positive integer."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{THREADS_ENV}={raw!r}: expected a positive integer")
    return value


def thread_limit(spec: Spec) -> int | None:
    """torch threads for a process that runs ``spec``'s batches: EMBOPT_THREADS, else 1 for the embedded default.

    The mini models are so small that torch's thread hand-offs cost more than
    they save: one thread runs the shipped queue 2x faster than two here, and
    far faster on a machine shared with other jobs. Real models keep torch's default (None).
    """
    threads = threads_from_env()
    if threads is None and spec.backend.kind == "mini" and spec.backend.device != "cuda":
        threads = 1
    return threads


def apply_thread_limit(spec: Spec) -> None:
    """Set :func:`thread_limit` in this process (it runs the batches: inline, or a Ray worker)."""
    threads = thread_limit(spec)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def ready(backend: Backend, models: Models | None, spec: Spec, emit: Callable[[ev.Event], None]) -> Models:
    """Load the backend (or take the injected one) and announce it."""
    import torch

    if models is None:
        emit(ev.BackendLoading("loading models", 0.0))
        models = load_models(backend, progress=lambda stage, fraction: emit(ev.BackendLoading(stage, fraction)))
    # The announced reference norm: corpus sample plus every story of the spec (each batch uses its own story's).
    sentences = [s for story in spec.stories.values() for s in story.sentences]
    norms = models.space.encode(sentences).float().norm(dim=1) if sentences else torch.zeros(0)
    reference = torch.cat([models.corpus_norms.float().cpu(), norms.cpu()])
    emit(
        ev.BackendReady(
            backend=backend.kind,
            device=str(models.space.device),
            dim=int(models.space.dim),
            reference_norm=float(reference.mean()) if reference.numel() else 0.0,
            seconds=round(models.seconds, 3),
            predictor=models.predictor_dir,
            predictor_revision=models.predictor_revision,
        )
    )
    return models


def _bank(value: str | None, spec: Spec, models: Models, emit: Callable[[ev.Event], None], banks: dict) -> Any:
    """The batch's sentence bank, loaded once per run (encoded once per machine: engine.banks.bank caches it)."""
    if value is None:
        return None
    key = (value, models.backend)
    if key not in banks:
        from engine.banks.bank import load_bank

        label = "corpus" if value == "corpus" else Path(value).name
        last = [0.0]

        def progress(done: int, total: int) -> None:
            now = time.perf_counter()
            if done in (0, total) or now - last[0] >= 0.25:  # a few events a second at most
                last[0] = now
                emit(ev.BankLoading(label, done, total))

        backend = models.backend
        bank = load_bank(
            value, spec.path.parent, models.space, encoder=backend.encoder, dtype=backend.dtype, progress=progress
        )
        emit(ev.BankLoading(label, len(bank), len(bank), cached=bank.cached))
        banks[key] = bank
    return banks[key]


def fail_pending(queue: _Queue, error: str, emit: Callable[[ev.Event], None]) -> None:
    for name in queue.names:
        if queue.status[name] == ev.PENDING:
            experiment = queue.experiments[name]
            row = result_row(experiment, queue.spec.story_of(experiment), ev.FAILED)
            row["error"] = error
            queue.results[name], queue.status[name] = row, ev.FAILED
            emit(ev.ExperimentFinished(name, ev.FAILED, row))
    emit(queue.event())
