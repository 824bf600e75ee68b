"""One batch of experiments, run to its end by their method.

A batch shares the story, the method and the bank (the runner groups them so).
This module builds what the method needs (the story embedded once, the scorer,
the bank), hands each row's result to the queue the moment that row ends, and
turns a batch-wide failure into failed rows. The loops live in engine/methods/.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from engine.events import FAILED, Event
from engine.methods import method_runner
from engine.methods.base import Batch, Poll
from engine.scoring.problem import Scorer, build_problem, fast_forward, needs_tokens
from engine.results import Row, result_row
from engine.spec import Experiment, Story


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def optimize_batch(
    experiments: Sequence[Experiment],
    story: Story,
    space: Any,
    predictor: Any,
    *,
    emit: Callable[[Event], None],
    on_finished: Callable[[dict[str, Any]], None],
    poll: Poll = lambda: None,
    corpus_norms: Tensor | None = None,
    bank: Any = None,
) -> list[dict[str, Any]]:
    """Run one batch to its end (or until ``poll`` says stop/skip); returns result rows in batch order.

    ``on_finished`` gets each row's result the moment that row ends (done,
    failed, interrupted or skipped), so the queue can move on while others run.
    ``bank`` is the batch's engine.banks.bank.SentenceBank (its experiments share it), if any.
    """
    start = time.perf_counter()
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
            scorer=Scorer(problem, space, fast_forward(predictor)),
            emit=emit,
            finish=finish,
            poll_controller=poll,
            reference_norm=float(torch.cat(real_norms).mean()),
            bank=bank,
        )
        method_runner(experiments[0].method)(batch)
    except Exception as err:  # a batch-wide failure (decoder, predictor, OOM) fails what was still running
        for i in range(len(rows)):
            if i not in results:
                finish(i, FAILED, error=_one_line(err))
    return [results[i] for i in range(len(rows))]
