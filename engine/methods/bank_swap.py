"""Bank swap: GCG over a sentence bank, for banks too big to score whole.

From z = E(init), each step takes the gradient g of the objective at the best
point of the row's buffer, ranks the bank sentences it has not scored yet by
the first-order estimate of the loss change if z moved to them, g . (e_b - z),
scores the best ``search_width`` exactly, and keeps the ``buffer_size`` best
points seen (as nanoGCG's buffer). Ranking costs one matrix product over the
bank per step; exact scorings are the expensive part, and ``scored`` counts them.
"""

from __future__ import annotations

import functools
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.methods.method import BUFFER_SIZE, SEARCH_WIDTH, TOP_K, Method, Stopping, option, refuse_cycle, require_bank

if TYPE_CHECKING:
    from torch import Tensor

    from engine.methods.batch import Batch
    from engine.methods.top import Seen

RANK_CHUNK = 1 << 16  # bank rows per ranking product


@dataclass(frozen=True)
class BankSwapOptions(Stopping):
    search_width: int = option(
        64, "bank sentences scored exactly per step (the best by the gradient's estimate)", 1, SEARCH_WIDTH
    )
    buffer_size: int = option(4, "best points kept; each step searches from the best of them", 1, BUFFER_SIZE)
    top_k: int = option(10, "how many of the best sentences seen to report", 1, TOP_K)


def check(experiment: Any) -> None:
    require_bank(experiment, 'method = "bank_swap"')
    refuse_cycle(experiment)


def _times(bank_rows: Tensor, g: Tensor) -> Tensor:
    return g @ bank_rows.T


def rank(bank: Any, grads: Tensor, points: Tensor, width: int, seen: list[Seen]) -> list[list[int]]:
    """Per row, the ``width`` unscored bank rows with the lowest estimate g . (e_b - z), best first."""
    import torch

    from engine.scoring.objectives import rowwise

    best_vals = [torch.empty(0, device=grads.device) for _ in seen]
    best_idx = [torch.empty(0, dtype=torch.long, device=grads.device) for _ in seen]
    offset = (grads * points).sum(dim=1)  # g . z
    for first, chunk in bank.chunks(RANK_CHUNK):
        # [n, A], eight rows of grads a product (objectives.rowwise): a product's rounding follows its shape
        estimate = rowwise(functools.partial(_times, chunk.to(grads)), grads).T - offset
        for a, row_seen in enumerate(seen):
            column = estimate[:, a].clone()
            done = [i - first for i in row_seen.scores if first <= i < first + chunk.shape[0]]
            if done:
                column[torch.tensor(done, device=column.device)] = float("inf")
            vals = torch.cat([best_vals[a], column])
            idx = torch.cat([best_idx[a], torch.arange(first, first + chunk.shape[0], device=column.device)])
            keep = torch.topk(vals, min(width, vals.numel()), largest=False)
            best_vals[a], best_idx[a] = keep.values, idx[keep.indices]
    return [
        [int(i) for i, v in zip(idx.tolist(), vals.tolist()) if v != float("inf")]
        for idx, vals in zip(best_idx, best_vals)
    ]


def run(batch: Batch) -> None:
    import torch

    from engine.events import DONE, RUNNING, Step
    from engine.methods.batch import show_best, start
    from engine.methods.top import Seen, end_rows, poll_rows, reached
    from engine.scoring.objectives import Weights
    from engine.scoring.terms import TEXT_TERMS

    rows, bank, scorer = batch.rows, batch.bank, batch.scorer
    experiments = [r.experiment for r in rows]
    z = start(batch)
    device = batch.device
    seen = [Seen() for _ in rows]
    weights = Weights.of([e.objective for e in experiments], device)
    with torch.inference_mode():
        _, init_loss = scorer.score(z, weights, texts=[e.init for e in experiments])
    # Each row's buffer: (loss, index) of its best points, -1 the init text; the first entry is where it searches from.
    buffers: list[list[tuple[float, int]]] = []
    for i, row in enumerate(rows):
        seen[i].add([-1], [float(init_loss[i])], [row.init_sim])
        buffers.append([(float(init_loss[i]), -1)])
        row.trajectory.append(row.init_sim)

    def point(i: int) -> Tensor:
        index = buffers[i][0][1]
        return z[i] if index < 0 else bank.rows([index])[0].to(z)

    active = list(range(len(rows)))
    loop_start = time.perf_counter()
    k = 0
    while active:
        if k > 0:
            active = poll_rows(batch, active, seen)
            if not active:
                return
        k += 1
        points = torch.stack([point(i) for i in active]).requires_grad_(True)
        # the gradient of the terms of z (a text's fluency has none): its estimate ranks the bank
        row_weights = Weights.of([experiments[i].objective for i in active], device, without=TEXT_TERMS)
        with torch.enable_grad():
            preds = scorer.predictions(points)
            loss = scorer.loss(preds, row_weights)
        grads = torch.autograd.grad(loss.sum(), points)[0]
        width = [experiments[i].options.search_width for i in active]
        picks = rank(bank, grads, points.detach(), max(width), [seen[i] for i in active])
        picks = [p[:w] for p, w in zip(picks, width)]
        flat = [b for p in picks for b in p]
        if flat:
            candidates = bank.rows(flat).to(z)
            cand_weights = Weights.of([experiments[i].objective for i, p in zip(active, picks) for _ in p], device)
            with torch.inference_mode():
                cand_preds = scorer.predictions(candidates)
                cand_sims = scorer.sims(cand_preds)
                cand_loss = scorer.loss(cand_preds, cand_weights, sims=cand_sims, texts=bank.texts(flat)).tolist()
            cand_mean = cand_sims.mean(dim=1).tolist()
        rate = batch.rate(k, loop_start)
        at = 0
        showing: list[int] = []
        for i, p in zip(active, picks):
            losses, sims = cand_loss[at : at + len(p)] if p else [], cand_mean[at : at + len(p)] if p else []
            at += len(p)
            seen[i].add(p, losses, sims)
            size = experiments[i].options.buffer_size
            buffers[i] = sorted(buffers[i] + list(zip(losses, p)))[:size]
            best = seen[i].best(1)[0]
            best_loss, best_sim = seen[i].scores[best]
            rows[i].record(best_sim, best_loss)
            rows[i].search_trace.append([seen[i].bank_scored, best_sim])
            batch.emit(Step(experiments[i].name, k, rows[i].steps, best_sim, (best_sim,), best_loss, 0.0, rate))
            if k % experiments[i].decode_every == 0:  # the best sentence so far, on the decode cadence
                showing.append(i)
        if showing:
            tops = [seen[i].best(1)[0] for i in showing]
            texts = [experiments[i].init if b < 0 else bank.text(b) for i, b in zip(showing, tops)]
            vectors = torch.stack([z[i] if b < 0 else bank.rows([b])[0].to(z) for i, b in zip(showing, tops)])
            show_best(batch, showing, texts, vectors, [seen[i].scores[b][1] for i, b in zip(showing, tops)], k)
        # done, the bank exhausted, or the early stop reached
        ending = [i for i, p in zip(active, picks) if k >= rows[i].steps or not p or reached(batch, i, seen[i])]
        if ending:
            end_rows(batch, ending, seen, DONE)
        active = [i for i in active if rows[i].status == RUNNING]


METHOD = Method(
    "bank_swap",
    "gradient-ranked swaps between bank sentences (GCG over a bank)",
    BankSwapOptions,
    run,
    check,
    uses=frozenset({"init", "steps", "decode_every", "beam_size"}),
)
