"""The batch a method runs, its start, and the honest score.

The honest score of an experiment is the best *real sentence* its method found
and how well that sentence does in z's place (``text``, ``text_sim``): for the
gradient method the best of the texts z decoded to along the way, for the bank
methods the best bank sentence. Each candidate is encoded and scored exactly
through :class:`engine.scoring.scorer.Scorer`; ``scored`` counts those scorings.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from engine.events import INTERRUPTED, RUNNING, SKIPPED, Decoded, Event, ExperimentStarted
from engine.methods.method import INIT_FROM_BANK, Command
from engine.results import Row
from engine.scoring.objectives import Weights
from engine.scoring.problem import Problem
from engine.scoring.scorer import Scorer

if TYPE_CHECKING:
    from engine.spec import Story

Poll = Callable[[], Command]  # between steps: what the running rows must do
Finish = Callable[..., None]  # finish(i, status, z_row=None, error=None)


@dataclass
class Batch:
    """One batch of experiments on one story and method, with everything its method needs."""

    rows: list[Row]
    story: Story
    problem: Problem
    scorer: Scorer
    emit: Callable[[Event], None]
    finish: Finish
    poll_controller: Poll
    reference_norm: float
    bank: Any = None  # engine.banks.bank.SentenceBank when the batch's experiments name one
    polled: float = 0.0  # seconds spent in poll (paused time among them): not counted in steps/s

    @property
    def device(self) -> torch.device:
        return self.scorer.space.device

    def poll(self) -> Command:
        start = time.perf_counter()
        try:
            return self.poll_controller()
        finally:
            self.polled += time.perf_counter() - start

    def rate(self, steps: int, since: float) -> float:
        """Steps per second since ``since``, not counting time spent paused or polling."""
        return steps / max(time.perf_counter() - since - self.polled, 1e-9)


def start(batch: Batch, texts: Sequence[str] | None = None) -> Tensor:
    """z [B, D] float32 from each row's init text (or ``texts``); announces every row with its init and oracle scores.

    One init text per encoder call: a batch pads to its longest sentence, which moves the last bits.
    """
    experiments = [r.experiment for r in batch.rows]
    space, problem = batch.scorer.space, batch.problem
    texts = list(texts) if texts is not None else [e.init for e in experiments]
    inits = {text: space.encode([text]).float() for text in dict.fromkeys(texts)}
    z = torch.cat([inits[t] for t in texts])
    with torch.inference_mode():  # init and oracle scores in one pass
        both = torch.cat([z, problem.oracle.unsqueeze(0)])
        preds = batch.scorer.predictions(both)
        first = batch.scorer.sims(preds).mean(dim=1).tolist()
        # each row's own objective, of its init and of the true sentence (the cycle term needs a decode of z:
        # the gradient method, the one that has it, measures its init loss in its first step)
        weights = Weights.of([e.objective for e in experiments], batch.device, without=("cycle",))
        true = batch.story.sentences[batch.story.optimize]
        init_loss = batch.scorer.loss(preds[:-1], weights, texts=texts).tolist()
        oracle_loss = batch.scorer.loss(
            preds[-1:].expand(len(experiments), -1, -1), weights, texts=[true] * len(experiments)
        ).tolist()
        oracle_nll = (batch.scorer.nll([true]) or [None])[0]
        cycles = ["cycle" in dict(e.objective.weights) for e in experiments]
        oracle_loss = [None if cycle else loss for cycle, loss in zip(cycles, oracle_loss)]
    oracle_sim = first[-1]
    names = tuple(e.name for e in experiments)
    for row, sim, loss, oracle in zip(batch.rows, first, init_loss, oracle_loss):
        row.init_sim, row.oracle_sim, row.status = sim, oracle_sim, RUNNING
        row.init_loss, row.oracle_loss, row.oracle_nll = loss, oracle, oracle_nll
        batch.emit(ExperimentStarted(row.experiment.name, row.steps, names, sim, oracle_sim, problem.target_texts))
    return z


@dataclass
class BestText:
    """One experiment's best real sentence so far, and every sentence it scored."""

    text: str | None = None
    sim: float | None = None
    seen: dict[str, float] = field(default_factory=dict)

    @property
    def scored(self) -> int:
        return len(self.seen)

    def add(self, text: str, sim: float) -> None:
        self.seen[text] = sim
        if self.sim is None or sim > self.sim:
            self.text, self.sim = text, sim


def offer_texts(
    scorer: Scorer, best: Sequence[BestText], texts: Sequence[str], *, vectors: bool = False
) -> tuple[list[float], Tensor | None]:
    """Score each text in its row's place (texts[j] for best[j]); returns the sims (and the embeddings [n, D]).

    Only texts a row has not scored before are scored (and counted); with
    ``vectors`` every text is encoded, else only those. One encoder call.
    """
    distinct = list(dict.fromkeys(texts))
    unseen = {t for j, t in enumerate(texts) if t not in best[j].seen}
    wanted = distinct if vectors else [t for t in distinct if t in unseen]
    encoded = scorer.encode(wanted) if wanted else None
    where = {t: n for n, t in enumerate(wanted)}
    if unseen:
        assert encoded is not None
        sims, _ = scorer.score(encoded[[where[t] for t in wanted if t in unseen]])
        fresh = dict(zip((t for t in wanted if t in unseen), sims.tolist()))
        for j, t in enumerate(texts):
            if t not in best[j].seen:
                best[j].add(t, fresh[t])
    out = encoded[[where[t] for t in texts]] if vectors and encoded is not None else None
    return [best[j].seen[t] for j, t in enumerate(texts)], out


def settle(batch: Batch, which: Sequence[int], best: Sequence[BestText]) -> None:
    """Write the honest fields of rows ``which`` (best[n] belongs to which[n]): text, text_sim, exact match, scored.

    In float32 a text's embedding hardly depends on the texts that share its encoder call (the last bits);
    in lower precision it moves a score by ~0.01, so there each best text is encoded and scored alone.
    """
    scorer = batch.scorer
    alone = scorer.space.dtype != torch.float32
    sims = [b.sim for b in best]
    by_beam: dict[int, list[int]] = {}
    for n, i in enumerate(which):
        if best[n].text is not None:
            by_beam.setdefault(batch.rows[i].experiment.beam_size, []).append(n)
    for beam, ns in by_beam.items():
        texts: list[str] = [best[n].text for n in ns]  # type: ignore[misc]
        vectors = torch.cat([scorer.encode([t]) for t in texts]) if alone else scorer.encode(texts)
        if alone:
            for n, sim in zip(ns, scorer.score(vectors)[0].tolist()):
                sims[n] = sim
        for n, exact in zip(ns, scorer.exact_match(vectors, beam)):
            batch.rows[which[n]].text_exact_match = exact
    texts = [b.text for b in best if b.text is not None]
    nll = dict(zip(texts, batch.scorer.nll(texts) or [None] * len(texts)))
    for n, i in enumerate(which):
        row = batch.rows[i]
        row.text, row.text_sim, row.scored = best[n].text, sims[n], best[n].scored
        row.text_nll = nll.get(best[n].text) if best[n].text is not None else None


def stop_early(options: Any, text_sim: float | None, exact: Sequence[bool] | None) -> bool:
    """The method's early stop (``stop_at``, ``stop_on_exact``) says this row is done."""
    if options.stop_at and text_sim is not None and text_sim >= options.stop_at:
        return True
    return bool(options.stop_on_exact and exact and all(exact))


def show_best(
    batch: Batch, which: Sequence[int], texts: Sequence[str], vectors: Tensor, sims: Sequence[float], step: int
) -> list[list[bool]]:
    """Announce rows ``which``'s best sentences so far (``texts``, their embeddings ``vectors`` [n, D], their
    ``sims``) with what their predictions decode to, one decoder call per beam size; returns whether each
    prediction decodes exactly to its target, row by row."""
    if not which:
        return []
    if len(which) > 1 and not batch.scorer.decoding.spare:  # as before: a decoder call per row
        return [show_best(batch, [i], [t], v[None], [s], step)[0] for i, t, v, s in zip(which, texts, vectors, sims)]
    with torch.inference_mode():
        preds = batch.scorer.predictions(vectors.to(batch.device))
    show_decodes(batch, which, preds, texts, step, [BestText(t, s) for t, s in zip(texts, sims)])
    return [batch.rows[i].exact_match for i in which]


def show_decodes(
    batch: Batch,
    which: Sequence[int],
    preds: Tensor,
    z_texts: Sequence[str],
    step: int,
    best: Sequence[BestText],
    decoded: Sequence[Sequence[str]] | None = None,
) -> None:
    """Decode the predictions [n, T, D] of rows ``which`` (one decoder call per beam size; ``decoded``: their
    texts, T a row, when already decoded), keep them on the rows with the text of z (``z_texts``) and whether
    each decodes exactly to its target, and announce each row with its best real sentence so far (``best``)
    in a Decoded event."""
    t, targets = preds.shape[1], batch.problem.target_texts
    found = [b.text for b in best if b.text is not None]
    fluency = dict(zip(found, batch.scorer.nll(found) or [None] * len(found)))
    by_beam: dict[int, list[int]] = {}
    for j, i in enumerate(which):
        by_beam.setdefault(batch.rows[i].experiment.beam_size, []).append(j)
    for beam, js in by_beam.items():
        if decoded is None:
            index = torch.tensor(js, device=preds.device)
            texts = batch.scorer.decode(preds[index].reshape(-1, preds.shape[2]), beam)
        else:
            texts = [text for j in js for text in decoded[j]]
        for n, j in enumerate(js):
            row = batch.rows[which[j]]
            row.decoded_z = z_texts[j]
            row.decoded_predictions = list(texts[n * t : (n + 1) * t])
            row.exact_match = [p.strip() == s.strip() for p, s in zip(row.decoded_predictions, targets)]
            batch.emit(
                Decoded(
                    row.experiment.name,
                    step,
                    row.decoded_z,
                    tuple(row.decoded_predictions),
                    targets,
                    tuple(row.exact_match),
                    best[j].text,
                    best[j].sim,
                    fluency.get(best[j].text) if best[j].text is not None else None,
                )
            )


def poll_rows(batch: Batch, active: Sequence[int], end: Callable[[list[int], str], None]) -> list[int]:
    """Between two steps: ``end`` every active row on stop (none are left), the named ones on skip; the rows
    still running."""
    command = batch.poll()
    if command.stop:
        end(list(active), INTERRUPTED)
        return []
    if command.skip:
        end([i for i in active if batch.rows[i].experiment.name in command.skip], SKIPPED)
    return [i for i in active if batch.rows[i].status == RUNNING]


def start_texts(batch: Batch) -> list[str]:
    """Each row's first sentence: its init text, or with init = "bank" the bank's best sentence for the story
    (the bank scored once for every such row; their ``bank_scored`` and ``start_text`` say so)."""
    texts = [r.experiment.init for r in batch.rows]
    if INIT_FROM_BANK in texts:
        best = [float("-inf"), ""]
        for first, chunk in batch.bank.chunks(512):
            sims, _ = batch.scorer.score(chunk.to(batch.device), rows=64)
            top = int(sims.argmax())
            if float(sims[top]) > best[0]:
                best = [float(sims[top]), batch.bank.text(first + top)]
        texts = [best[1] if t == INIT_FROM_BANK else t for t in texts]
        for row, text in zip(batch.rows, texts):
            if row.experiment.init == INIT_FROM_BANK:
                row.bank_scored, row.start_text = len(batch.bank), text
    return texts
