"""Token swap: GCG over the tokens of the encoder's input, so every iterate is a real sentence.

From the tokens of ``init`` (or, with ``init = "bank"``, of the bank's best
sentence for the story), each step takes the gradient of the objective with
respect to the one-hot input tokens through the SONAR encoder
(:meth:`engine.models.space.EmbeddingSpace.encode_soft`), ranks replacement tokens per
position (``topk``), forms ``search_width`` candidates that each change
``n_replace`` random positions to random tokens of those lists, drops the
candidates whose text does not tokenise back to the same ids (nanoGCG's
``filter_ids``) or was scored before, and scores the rest exactly as strings
(encode, predict, objective). The ``buffer_size`` best sentences are kept; each
step edits the best of them. Randomness comes from the experiment's ``seed``
alone, so a row finds the same text whatever shares its batch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.methods.method import (
    BUFFER_SIZE,
    SEARCH_WIDTH,
    Invalid,
    Method,
    Stopping,
    bank_init,
    option,
    refuse_cycle,
)

if TYPE_CHECKING:
    from torch import Generator, Tensor

    from engine.methods.batch import Batch

TOP_SHOWN = 10  # sentences reported in a row's top list
# (id of the tokenizer, table rows, device) -> (that tokenizer, kept so its id stays its own; [V] bool mask)
_allowed: dict[tuple[int, int, str], tuple[Any, Tensor]] = {}


@dataclass(frozen=True)
class TokenSwapOptions(Stopping):
    search_width: int = option(64, "candidate sentences scored exactly per step", 1, SEARCH_WIDTH)
    n_replace: int = option(1, "tokens replaced in each candidate", 1, 64)
    topk: int = option(32, "replacement tokens per position, the best by the gradient", 1, 4096)
    buffer_size: int = option(4, "best sentences kept; each step edits the best of them", 1, BUFFER_SIZE)


def check(experiment: Any) -> None:
    refuse_cycle(experiment)
    if bank_init(experiment):
        return
    words = len(experiment.init.split())
    if experiment.options.n_replace > words:
        raise Invalid(
            "n_replace", f"n_replace = {experiment.options.n_replace} is more than the {words} word(s) of init"
        )


def allowed_tokens(space: Any) -> Tensor:
    """[V] bool over the encoder's embedding table: the tokens a candidate may use (built once per tokenizer)."""
    from engine.models.vocab import candidate_mask

    tokenizer, rows = space.tokenizer, int(space.token_table.shape[0])
    key = (id(tokenizer), rows, str(space.device))
    if key not in _allowed:
        _allowed[key] = (tokenizer, candidate_mask(tokenizer, rows).to(space.device))
    return _allowed[key][1]


@dataclass
class Search:
    """One row's state: its buffer of (loss, ids) and every text it scored (text -> (loss, sim))."""

    buffer: list[tuple[float, tuple[int, ...]]]
    generator: Generator
    scores: dict[str, tuple[float, float]] = field(default_factory=dict)

    def best_text(self) -> str:
        return min(self.scores, key=lambda t: self.scores[t][0])


def candidates(
    ids: Tensor, grad: Tensor, allowed: Tensor, *, width: int, n_replace: int, topk: int, generator: Generator
) -> list[Tensor]:
    """``width`` edits of content ids [L]: ``n_replace`` positions each set to one of its ``topk`` tokens by -grad."""
    import torch

    length = ids.shape[0]
    scores = (-grad).masked_fill(~allowed, -torch.inf)  # [L, V]
    top = scores.topk(min(topk, int(allowed.sum())), dim=1).indices.cpu()  # [L, k]
    out = []
    for _ in range(width):
        positions = torch.randperm(length, generator=generator)[: min(n_replace, length)]
        picks = torch.randint(top.shape[1], (positions.shape[0],), generator=generator)
        new = ids.cpu().clone()
        new[positions] = top[positions, picks]
        out.append(new)
    return out


def run(batch: Batch) -> None:
    import torch

    from engine.events import DONE, RUNNING, Step
    from engine.methods.batch import poll_rows, start, start_texts, stop_early
    from engine.scoring.objectives import Weights
    from engine.scoring.terms import TEXT_TERMS

    rows, scorer, space = batch.rows, batch.scorer, batch.scorer.space
    experiments = [r.experiment for r in rows]
    device = batch.device
    starts = start_texts(batch)
    start(batch, texts=starts)
    allowed = allowed_tokens(space)
    vocab = allowed.shape[0]
    searches: list[Search] = []
    for row, text in zip(rows, starts):
        ids = tuple(space.source_ids(text)[1:-1].tolist())
        weights = Weights.of([row.experiment.objective], device)
        sims, loss = scorer.score_texts([text], weights)
        search = Search([(float(loss[0]), ids)], torch.Generator())
        search.generator.manual_seed(row.experiment.seed)
        search.scores[text] = (float(loss[0]), float(sims[0]))
        searches.append(search)
        row.trajectory.append(float(sims[0]))
    lang, eos = space.source_ids("x")[0], space.source_ids("x")[-1]

    active = list(range(len(rows)))
    loop_start = time.perf_counter()
    k = 0
    while active:
        if k > 0:
            active = poll_rows(batch, active, lambda which, status: _end(batch, which, searches, status))
            if not active:
                return
        k += 1
        texts: list[str] = []
        owners: list[int] = []
        token_ids: dict[str, tuple[int, ...]] = {}
        for i in active:
            options = experiments[i].options
            ids = torch.tensor(searches[i].buffer[0][1], device=device)
            full = torch.cat([lang.view(1), ids, eos.view(1)])
            onehot = torch.nn.functional.one_hot(full, vocab).float().unsqueeze(0).requires_grad_(True)
            with torch.enable_grad():
                z = space.encode_soft(onehot).float()
                # the gradient of the terms of z (a text's fluency has none to the one-hot input)
                weights = Weights.of([experiments[i].objective], device, without=TEXT_TERMS)
                loss = scorer.loss(scorer.predictions(z), weights)
            grad = torch.autograd.grad(loss.sum(), onehot)[0][0, 1:-1]
            fresh: dict[str, tuple[int, ...]] = {}  # text -> its ids (it tokenises back to them)
            for new in candidates(
                ids,
                grad,
                allowed,
                width=options.search_width,
                n_replace=options.n_replace,
                topk=options.topk,
                generator=searches[i].generator,
            ):
                text = space.text_of(new)
                if text in searches[i].scores or text in fresh or not text.strip():
                    continue
                if not torch.equal(space.source_ids(text)[1:-1].cpu(), new):  # does not survive decode -> retokenise
                    continue
                fresh[text] = tuple(new.tolist())
            if not fresh:  # every edit of the best sentence is scored: search from the next one in the buffer
                searches[i].buffer.pop(0)
            texts += list(fresh)
            owners += [i] * len(fresh)
            token_ids.update(fresh)
        if texts:
            vectors = scorer.encode(texts)
            weights = Weights.of([experiments[i].objective for i in owners], device)
            with torch.inference_mode():
                preds = scorer.predictions(vectors)
                sims = scorer.sims(preds)
                losses = scorer.loss(preds, weights, sims=sims, texts=texts).tolist()
            means = sims.mean(dim=1).tolist()
            for text, i, loss_value, sim in zip(texts, owners, losses, means):
                searches[i].scores[text] = (loss_value, sim)
                searches[i].buffer.append((loss_value, token_ids[text]))
        rate = batch.rate(k, loop_start)
        showing = []
        for i in active:
            search, options = searches[i], experiments[i].options
            search.buffer = sorted(search.buffer)[: options.buffer_size]
            loss_value, sim = search.scores[search.best_text()]
            rows[i].record(sim, loss_value)
            rows[i].search_trace.append([len(search.scores) + rows[i].bank_scored, sim])
            batch.emit(Step(experiments[i].name, k, rows[i].steps, sim, (sim,), loss_value, 0.0, rate))
            if options.stop_on_exact or k % experiments[i].decode_every == 0 or k >= rows[i].steps:
                showing.append(i)
        exact = dict(zip(showing, _show(batch, showing, searches, k)))
        ending = []
        for i in active:
            search, sim = searches[i], rows[i].trajectory[-1]
            exhausted = not search.buffer
            if k >= rows[i].steps or exhausted or stop_early(experiments[i].options, sim, exact.get(i)):
                ending.append(i)
        _end(batch, ending, searches, DONE)
        active = [i for i in active if rows[i].status == RUNNING]


def _show(batch: Batch, which: list[int], searches: list[Search], k: int) -> list[list[bool]]:
    """Show rows ``which``'s best sentences (each encoded on its own, as they were scored)."""
    import torch

    from engine.methods.batch import show_best

    if not which:
        return []
    texts = [searches[i].best_text() for i in which]
    vectors = torch.cat([batch.scorer.encode([text]) for text in texts])
    return show_best(batch, which, texts, vectors, [searches[i].scores[t][1] for i, t in zip(which, texts)], k)


def _end(batch: Batch, which: list[int], searches: list[Search], status: str) -> None:
    from engine.methods.batch import BestText, settle

    if not which:
        return
    best, vectors = [], []
    for i in which:  # the best text rescored from scratch: the honest score
        tracker = BestText()
        text = searches[i].best_text()
        vectors.append(batch.scorer.encode([text])[0])
        tracker.add(text, float(batch.scorer.score(vectors[-1].unsqueeze(0))[0][0]))
        best.append(tracker)
    settle(batch, which, best)
    for i, tracker, vector in zip(which, best, vectors):
        row = batch.rows[i]
        row.scored = len(searches[i].scores) + row.bank_scored
        row.roundtrip_sim = tracker.sim
        top = sorted(searches[i].scores.items(), key=lambda kv: kv[1][0])[:TOP_SHOWN]
        row.top = [{"text": t, "sim": sim, "loss": loss} for t, (loss, sim) in top]
        batch.finish(i, status, vector)


METHOD = Method(
    "token_swap",
    "GCG over the tokens of the encoder's input: every iterate is a real sentence",
    TokenSwapOptions,
    run,
    check,
    uses=frozenset({"init", "steps", "decode_every", "beam_size", "seed"}),
)
