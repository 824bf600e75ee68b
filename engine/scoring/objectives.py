"""Losses and metrics over a batch of predictions.

Shapes: ``preds`` is [B, T, D] (the prediction of each scored target, for each
row of the batch), ``targets`` is [T, D] (the real embeddings of the target
sentences). Every loss is per row ([B]) so a batch can be summed for one
backward pass while each row's gradient stays exactly what it would be alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import torch
from torch import Tensor

from engine.scoring.terms import TERMS

if TYPE_CHECKING:
    from engine.spec import Objective


# Rows per model call. Matrix kernels pick their blocking (and so their rounding) by shape: a row
# computed among 7 others can differ in the last bit from the same row alone, and the optimisation
# (Adam's normalised steps near a plateau) grows that bit into visible differences within ~30 steps.
# Every model call therefore sees exactly this many rows (the last chunk padded), so a row's numbers
# never depend on which other experiments share its batch.
ROWS_PER_CALL = 8


def rowwise(fn: Callable[[Tensor], Tensor], x: Tensor, rows: int = ROWS_PER_CALL) -> Tensor:
    """``fn`` over x [N, ...] in calls of exactly ``rows`` rows; padding rows are detached copies of row 0."""
    n = x.shape[0]
    pad = (-n) % rows
    if pad:
        x = torch.cat([x, x[:1].detach().expand(pad, *x.shape[1:])])
    return torch.cat([fn(chunk) for chunk in x.split(rows)])[:n]


class TokenScorer(Protocol):
    """The part of the embedding space a ``decoder_ce`` term needs."""

    def token_nll(self, vectors: Tensor, ids: Tensor, seq_lens: Tensor) -> Tensor: ...


def cosine_sims(preds: Tensor, targets: Tensor) -> Tensor:
    """[B, T] cosine similarity of each prediction with its target (the metric reported everywhere).

    The targets are expanded to the predictions' shape first: broadcast inside
    cosine_similarity, a batch of one row built another autograd graph than a
    batch of many, and its gradient, summed with another term's, rounded
    differently (a row alone ended elsewhere than in a batch).
    """
    return torch.nn.functional.cosine_similarity(preds, targets.unsqueeze(0).expand_as(preds), dim=-1)


def mse(preds: Tensor, targets: Tensor) -> Tensor:
    """[B, T] mean squared error per target, averaged over dimensions."""
    return (preds - targets.unsqueeze(0).expand_as(preds)).pow(2).mean(dim=-1)


@dataclass(frozen=True)
class TargetTokens:
    """Target sentences tokenised once for the ``decoder_ce`` term."""

    ids: Tensor  # [T, L]
    seq_lens: Tensor  # [T]


def decoder_ce(scorer: TokenScorer, preds: Tensor, tokens: TargetTokens) -> Tensor:
    """[B, T] mean token cross-entropy of the decoder reading each prediction against its target's tokens."""
    _, t, d = preds.shape
    ids = tokens.ids.repeat(ROWS_PER_CALL, 1)
    lens = tokens.seq_lens.repeat(ROWS_PER_CALL)

    def score(chunk: Tensor) -> Tensor:
        return scorer.token_nll(chunk.reshape(-1, d), ids, lens).reshape(-1, t)

    return rowwise(score, preds)


@dataclass(frozen=True)
class Weights:
    """Per-row term weights of a batch, with what the loss needs to know decided once on the host."""

    matrix: Tensor  # [B, K], K = len(TERMS); 0 where a row does not use a term
    used: tuple[bool, ...]  # per term: does any row weight it
    ce_rows: Tensor  # indices of the rows that weight decoder_ce

    def uses(self, term: str) -> bool:
        return self.used[TERMS.index(term)]

    @classmethod
    def of(cls, objectives: Sequence[Objective], device: torch.device, without: Sequence[str] = ()) -> Weights:
        """``without``: terms left out (weight 0) in every row."""
        rows = [
            [0.0 if name in without else float(dict(o.weights).get(name, 0.0)) for name in TERMS] for o in objectives
        ]
        used = tuple(any(row[k] != 0.0 for row in rows) for k in range(len(TERMS)))
        ce = TERMS.index("decoder_ce")
        ce_rows = [i for i, row in enumerate(rows) if row[ce] != 0.0]
        return cls(
            torch.tensor(rows, dtype=torch.float32, device=device).reshape(len(rows), len(TERMS)),
            used,
            torch.tensor(ce_rows, dtype=torch.long, device=device),
        )


def cycle_distance(z: Tensor, again: Tensor) -> Tensor:
    """[B] 1 - cos(z, E(D(z))): how far z is from the embedding of its own decoded text."""
    return 1 - torch.nn.functional.cosine_similarity(z.float(), again.float(), dim=-1)


def objective_loss(
    preds: Tensor,
    targets: Tensor,
    weights: Weights,
    *,
    sims: Tensor | None = None,
    scorer: TokenScorer | None = None,
    tokens: TargetTokens | None = None,
    cycle: tuple[Tensor, Tensor] | None = None,
    text_terms: tuple[Tensor, Tensor] | None = None,
) -> Tensor:
    """[B] loss per row: sum over terms of weight * term, each term averaged over targets.

    Terms nobody in the batch uses are not computed; ``decoder_ce`` (a decoder
    pass per target) runs only on the rows that weight it. ``cycle`` is
    (z [B, D], E(D(z)) [B, D]), the second held fixed (no gradient through the decoder).
    ``text_terms`` is (fluency NLL [B], repetition penalty [B]) of each row's text.
    """
    if sims is None:
        sims = cosine_sims(preds, targets)
    w = {name: weights.matrix[:, k] for k, name in enumerate(TERMS)}
    used = dict(zip(TERMS, weights.used))
    loss = torch.zeros(preds.shape[0], dtype=torch.float32, device=preds.device)
    if used["cosine"]:
        loss = loss - w["cosine"] * sims.float().mean(dim=1)
    if used["mse"]:
        loss = loss + w["mse"] * mse(preds, targets).float().mean(dim=1)
    if used["decoder_ce"]:
        if scorer is None or tokens is None:
            raise ValueError("decoder_ce needs the embedding space and the target tokens")
        rows = weights.ce_rows
        ce = decoder_ce(scorer, preds[rows], tokens).float().mean(dim=1)
        loss = loss.index_add(0, rows, w["decoder_ce"][rows] * ce)
    if used["cycle"]:
        if cycle is None:
            raise ValueError("cycle needs z and the embedding of its decoded text")
        loss = loss + w["cycle"] * cycle_distance(cycle[0], cycle[1].detach())
    if used["fluency"] or used["repetition"]:
        if text_terms is None:
            raise ValueError("fluency and repetition need the candidates' texts and a fluency model")
        nll, repetition = (t.to(loss) for t in text_terms)
        loss = loss + w["fluency"] * nll + w["repetition"] * repetition
    return loss
