"""One batch of experiments, run to its end by their method: what every executor runs.

A batch shares the story, the method and the bank (the queue groups them so).
:func:`run_batch` loads the batch's bank (once per run); :func:`optimize_batch`
builds what the method needs (the story embedded once, the scorer), hands each
row's result to the queue the moment that row ends, and turns a batch-wide
failure into failed rows. The loops live in engine/methods/.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine import events as ev
from engine.events import FAILED, Event
from engine.methods import METHODS
from engine.methods.batch import Batch, Poll
from engine.methods.method import GO_ON
from engine.results import Row, result_row
from engine.run.backend import Models
from engine.scoring.problem import build_problem, fast_forward, needs_tokens
from engine.scoring.scorer import DECODING, Decoding, Scorer, round_trip
from engine.spec import Experiment, Spec, Story
from engine.text import one_line


def run_batch(
    batch: list[Experiment],
    spec: Spec,
    models: Models,
    banks: dict,
    *,
    emit: Callable[[ev.Event], None],
    on_finished: Callable[[dict[str, Any]], None],
    poll: Poll,
    checked: set[str] | None = None,
) -> None:
    """One batch with its bank (loaded once per run into ``banks``), by :func:`optimize_batch`.

    ``checked``: the stories whose round trip this run has announced (once each: a StoryChecked event).
    """
    story = spec.story_of(batch[0])
    if checked is not None and story.name not in checked:
        checked.add(story.name)
        exact, mean_sim = round_trip(models.space, story.sentences)
        emit(ev.StoryChecked(story.name, len(story.sentences), exact, mean_sim))
    try:
        bank = _bank(batch[0].bank, spec, models, emit, banks)
    except Exception as err:  # an unreadable bank fails its batch; the queue goes on
        error = one_line(err)
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
        fluency=models.fluency,
    )


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
            # a few events a second at most; the one that says "ready" comes once, after the load, with `cached`
            if done < total and (done == 0 or now - last[0] >= 0.25):
                last[0] = now
                emit(ev.BankLoading(label, done, total))

        backend = models.backend
        bank = load_bank(
            value, spec.path.parent, models.space, encoder=backend.encoder, dtype=backend.dtype, progress=progress
        )
        emit(ev.BankLoading(label, len(bank), len(bank), cached=bank.cached, uncached=bank.uncached))
        banks[key] = bank
    return banks[key]


def optimize_batch(
    experiments: Sequence[Experiment],
    story: Story,
    space: Any,
    predictor: Any,
    *,
    emit: Callable[[Event], None],
    on_finished: Callable[[dict[str, Any]], None],
    poll: Poll = lambda: GO_ON,
    corpus_norms: Tensor | None = None,
    bank: Any = None,
    fluency: Any = None,
    decoding: Decoding = DECODING,
) -> list[dict[str, Any]]:
    """Run one batch to its end (or until ``poll`` says stop/skip); returns result rows in batch order.

    ``on_finished`` gets each row's result the moment that row ends (done,
    failed, interrupted or skipped), so the queue can move on while others run.
    ``bank`` is the batch's engine.banks.bank.SentenceBank (its experiments share it), if any; ``fluency`` the
    backend's engine.models.fluency.FluencyModel, if it has one; ``decoding``: how its decodes run
    (engine.scoring.scorer.Decoding; benchmarks compare the old way).
    """
    start = time.perf_counter()
    if fluency is not None:
        fluency.forget()  # its NLL cache lives for one batch: a long queue's candidates would otherwise pile up
    rows = [Row(e, e.steps) for e in experiments]
    results: dict[int, dict[str, Any]] = {}

    def finish(i: int, status: str, z_row: Tensor | None = None, error: str | None = None) -> None:
        row = rows[i]
        row.status, row.error, row.seconds = status, error, time.perf_counter() - start
        if z_row is not None:
            row.z = z_row.tolist()
        results[i] = result_row(row.experiment, story, status, row)
        on_finished(results[i])

    try:
        predictor.requires_grad_(False)  # only z gets gradients; no optimiser state for weights
        problem = build_problem(story, space, predictor, need_tokens=needs_tokens([e.objective for e in experiments]))
        real_norms = [problem.story_norms] + ([corpus_norms.to(space.device)] if corpus_norms is not None else [])
        batch = Batch(
            rows=rows,
            story=story,
            problem=problem,
            scorer=Scorer(problem, space, fast_forward(predictor), fluency, decoding),
            emit=emit,
            finish=finish,
            poll_controller=poll,
            reference_norm=float(torch.cat(real_norms).mean()),
            bank=bank,
        )
        METHODS[experiments[0].method].run(batch)
    except Exception as err:  # a batch-wide failure (decoder, predictor, OOM) fails what was still running
        for i in range(len(rows)):
            if i not in results:
                finish(i, FAILED, error=one_line(err))
    return [results[i] for i in range(len(rows))]
