"""Bank search: every bank sentence scored exactly in z's place; the ``top_k`` best reported.

The predictions do not depend on which experiment asks, so each chunk of the
bank goes through the predictor once for the whole batch; only the objective
is per row. A step is one chunk; its trace is the best score so far.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.methods.method import TOP_K, Method, Stopping, option, refuse_cycle, require_bank

if TYPE_CHECKING:
    from engine.methods.batch import Batch

CHUNK = 512  # bank sentences per step
ROWS_PER_CALL = 64  # predictor rows per call while scoring a chunk


@dataclass(frozen=True)
class BankSearchOptions(Stopping):
    top_k: int = option(10, "how many of the best bank sentences to report", 1, TOP_K)


def check(experiment: Any) -> None:
    require_bank(experiment, 'method = "bank_search"')
    refuse_cycle(experiment)


def run(batch: Batch) -> None:
    import torch

    from engine.events import DONE, RUNNING, Step
    from engine.methods.batch import start
    from engine.methods.top import Seen, end_rows, poll_rows, reached
    from engine.scoring.objectives import Weights
    from engine.scoring.terms import TEXT_TERMS

    rows, bank, scorer = batch.rows, batch.bank, batch.scorer
    n_chunks = max(1, math.ceil(len(bank) / CHUNK))
    for row in rows:
        row.steps = n_chunks
    start(batch)
    experiments = [r.experiment for r in rows]
    objectives = list(dict.fromkeys(e.objective for e in experiments))  # rows sharing an objective share its loss
    text_terms = any(t in dict(o.weights) for o in objectives for t in TEXT_TERMS)
    seen = [Seen(limit=e.options.top_k) for e in experiments]
    for row in rows:
        row.trajectory.append(row.init_sim)
    active = list(range(len(rows)))
    loop_start = time.perf_counter()
    for step, (first, chunk) in enumerate(bank.chunks(CHUNK), start=1):
        indices = list(range(first, first + chunk.shape[0]))
        texts = bank.texts(indices) if text_terms else None
        with torch.inference_mode():
            preds = scorer.predictions(chunk.to(batch.device), ROWS_PER_CALL)
            sims = scorer.sims(preds)
            mean = sims.mean(dim=1).tolist()
            losses = {
                o: scorer.loss(preds, Weights.of([o] * len(indices), batch.device), sims=sims, texts=texts).tolist()
                for o in objectives
            }
        rate = batch.rate(step, loop_start)
        for i in active:
            seen[i].add(indices, losses[experiments[i].objective], mean)
            best = seen[i].best(1)[0]
            loss, sim = seen[i].scores[best]
            rows[i].record(sim, loss)
            rows[i].search_trace.append([seen[i].bank_scored, sim])
            batch.emit(Step(experiments[i].name, step, n_chunks, sim, (sim,), loss, 0.0, rate))
        if step == n_chunks:
            break
        end_rows(batch, [i for i in active if reached(batch, i, seen[i])], seen, DONE)
        active = poll_rows(batch, [i for i in active if rows[i].status == RUNNING], seen)
        if not active:
            return
    end_rows(batch, active, seen, DONE)


METHOD = Method(
    "bank_search",
    "score every sentence of a bank in z's place; report the top k",
    BankSearchOptions,
    run,
    check,
    uses=frozenset({"beam_size"}),
)
