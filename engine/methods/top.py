"""The end of a bank method's row: its top-k sentences, rescored the honest way, and its z.

Bank methods score bank embeddings in chunks; what they report is re-scored
exactly as the honest score defines it (each text encoded and scored in z's
place), so ``text_sim`` means what it means for every other method.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import torch

from engine.methods.batch import Batch, BestText, settle, show_decodes, stop_early
from engine.methods.batch import poll_rows as poll
from engine.scoring.objectives import Weights


@dataclass
class Seen:
    """The bank sentences a row scored: index -> (loss, sim); the init text as index -1.

    With a ``limit`` only about the best ``limit`` are kept (a search over
    millions of sentences), but every scoring is counted.
    """

    limit: int | None = None
    scores: dict[int, tuple[float, float]] = field(default_factory=dict)
    bank_scored: int = 0

    def add(self, indices: list[int], losses: list[float], sims: list[float]) -> None:
        for i, loss, sim in zip(indices, losses, sims):
            self.bank_scored += i >= 0 and i not in self.scores
            self.scores[i] = (loss, sim)
        if self.limit is not None and len(self.scores) > 2 * self.limit + 1024:
            self.scores = {i: self.scores[i] for i in self.best(self.limit)}

    def best(self, k: int) -> list[int]:
        return heapq.nsmallest(k, self.scores, key=lambda i: self.scores[i][0])


def reached(batch: Batch, i: int, seen: Seen) -> bool:
    """Whether row i's early stop holds for its best bank sentence so far."""
    options = batch.rows[i].experiment.options
    if not (options.stop_at or options.stop_on_exact):
        return False
    best = seen.best(1)[0]
    exact = None
    if options.stop_on_exact:
        vector = batch.scorer.encode([batch.rows[i].experiment.init]) if best < 0 else batch.bank.rows([best])
        exact = batch.scorer.exact_match(vector.to(batch.device), batch.rows[i].experiment.beam_size)[0]
    return stop_early(options, seen.scores[best][1], exact)


def poll_rows(batch: Batch, active: list[int], seen: list[Seen]) -> list[int]:
    """Between steps: the rows still running after stop (none) or skip requests end the others."""
    return poll(batch, active, lambda which, status: end_rows(batch, which, seen, status))


def end_rows(batch: Batch, which: list[int], seen: list[Seen], status: str) -> None:
    """Finish rows ``which`` (``seen`` is indexed by row) with their top-k and honest fields."""
    if not which:
        return
    bank, scorer = batch.bank, batch.scorer
    best: list[BestText] = []
    z_rows = []
    for i in which:
        row, experiment = batch.rows[i], batch.rows[i].experiment
        top = seen[i].best(experiment.options.top_k)
        texts = [experiment.init if j < 0 else bank.text(j) for j in top]
        tracker = BestText()
        if texts:
            vectors = scorer.encode(texts)
            weights = Weights.of([experiment.objective] * len(texts), batch.device)
            sims, losses = scorer.score(vectors, weights, texts=texts)
            order = sorted(range(len(texts)), key=lambda m: float(losses[m]))
            row.top = [{"text": texts[m], "sim": float(sims[m]), "loss": float(losses[m])} for m in order]
            for m in order[:1]:
                tracker.add(texts[m], float(sims[m]))
            z_rows.append(vectors[order[0]] if top[order[0]] < 0 else bank.rows([top[order[0]]])[0].to(vectors))
        else:
            z_rows.append(None)
        best.append(tracker)
    settle(batch, which, best)
    _describe_final(batch, which, z_rows, best)
    for n, i in enumerate(which):
        batch.rows[i].scored = seen[i].bank_scored
        batch.finish(i, status, z_rows[n])


def _describe_final(batch: Batch, which: list[int], z_rows: list, best: list[BestText]) -> None:
    """decoded_z, the predictions' decodes, the round trip and final z of rows that found something."""
    scorer = batch.scorer
    found = [n for n in range(len(which)) if z_rows[n] is not None]
    for beam in dict.fromkeys(batch.rows[which[n]].experiment.beam_size for n in found):
        ns = [n for n in found if batch.rows[which[n]].experiment.beam_size == beam]
        z = torch.stack([z_rows[n] for n in ns])
        with torch.inference_mode():
            preds = scorer.predictions(z)
        groups = scorer.decode_groups([z, *preds], beam)  # each z, then each row's predictions
        z_texts, decoded = groups[0], groups[1:]
        for m, n in enumerate(ns):
            i = which[n]
            show_decodes(batch, [i], preds[m : m + 1], [z_texts[m]], batch.rows[i].steps_done, [best[n]], [decoded[m]])
            batch.rows[i].roundtrip_sim = float(scorer.score(scorer.encode([z_texts[m]]))[0][0])
