"""Exact scoring of anything put in z's place: the one place a candidate is scored.

Every method scores through a :class:`Scorer`, so a number means the same
whatever found it: ``sims`` is the mean cosine similarity of the predictions
with their targets (the ``final_sim`` / ``text_sim`` metric), ``loss`` the
experiment's objective (:meth:`Scorer.loss`). Its decodes follow a
:class:`Decoding`: how long they may run and which of them are spared.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from engine.scoring.objectives import Weights, cosine_sims, objective_loss, rowwise
from engine.scoring.problem import Problem, predict

MAX_DECODE_LEN = 64  # the fixed cap of every decode before caps followed the story; still the front door's


@dataclass(frozen=True)
class Decoding:
    """How a batch decodes; a model that never says EOS (random, or lost) decodes to the cap, so the cap is its cost.

    ``story_cap``: at most ``Problem.decode_len`` tokens (twice the story's longest sentence, at least
    ``DECODE_FLOOR``) instead of :data:`MAX_DECODE_LEN`. ``spare``: an exact-match decode stops at the
    first token that rules the match out (:meth:`Scorer.exact_match`), and the decodes a step shows
    share one decoder call (:meth:`Scorer.decode_groups`). :data:`LEGACY_DECODING` is neither: every
    decode as before, kept for ``benchmarks/real_shape.py --legacy-decode``.
    """

    story_cap: bool = True
    spare: bool = True


DECODING = Decoding()
LEGACY_DECODING = Decoding(story_cap=False, spare=False)


@dataclass
class Scorer:
    """Exact scores of vectors or texts in z's place, for one batch's story."""

    problem: Problem
    space: Any
    model: Callable[[Tensor], Tensor]
    decoding: Decoding = DECODING

    @property
    def decode_len(self) -> int:
        return self.problem.decode_len if self.decoding.story_cap else MAX_DECODE_LEN

    def predictions(self, z: Tensor, rows: int | None = None) -> Tensor:
        return rowwise(lambda chunk: predict(self.model, self.problem, chunk), z, *(() if rows is None else (rows,)))

    def sims(self, preds: Tensor) -> Tensor:
        """[N, T] cosine of each prediction [N, T, D] with its target."""
        return cosine_sims(preds, self.problem.targets)

    def loss(
        self, preds: Tensor, weights: Weights, *, sims: Tensor | None = None, cycle: tuple[Tensor, Tensor] | None = None
    ) -> Tensor:
        """[N] the objective of predictions [N, T, D] (differentiable), one row of ``weights`` per row.

        ``sims``: their :meth:`sims`, when already computed; ``cycle``: (z, E(D(z))) for the cycle term.
        """
        return objective_loss(
            preds, self.problem.targets, weights, sims=sims, scorer=self.space, tokens=self.problem.tokens, cycle=cycle
        )

    def score(self, z: Tensor, weights: Weights | None = None, rows: int | None = None) -> tuple[Tensor, Tensor]:
        """(sims [N], loss [N]) of z [N, D] without gradients; the loss is the objective when given, else -sims.

        ``weights`` hold one row per row of z (or one row for all of them).
        """
        with torch.inference_mode():
            preds = self.predictions(z, rows)
            sims = self.sims(preds)
            mean = sims.mean(dim=1)
            if weights is None:
                return mean, -mean
            return mean, self.loss(preds, weights, sims=sims)

    def encode(self, texts: Sequence[str]) -> Tensor:
        """[N, D] float32 embeddings, one encoder call."""
        with torch.inference_mode():
            return self.space.encode(list(texts)).float()

    def decode(self, vectors: Tensor, beam_size: int) -> list[str]:
        return decode_unique(self.space, vectors, beam_size, self.decode_len)

    def decode_groups(self, groups: Sequence[Tensor], beam_size: int) -> list[list[str]]:
        """The texts of each group of vectors [n_g, D]: one decoder call for them all (``spare``), else one each.

        A decode's time is its length times a step's, and a step of a few more rows costs about
        what one of fewer does (the weights are read once per step either way).
        """
        if not self.decoding.spare:
            return [self.decode(group, beam_size) for group in groups]
        texts = self.decode(torch.cat(list(groups)), beam_size)
        out, at = [], 0
        for group in groups:
            out.append(texts[at : at + len(group)])
            at += len(group)
        return out

    def exact_match(self, vectors: Tensor, beam_size: int) -> list[list[bool]]:
        """For each vector [N, D]: does each prediction made from it decode exactly to its target."""
        with torch.inference_mode():
            preds = self.predictions(vectors)
        n, t, d = preds.shape
        wanted = self.problem.target_texts
        flat = preds.reshape(-1, d)
        if self.decoding.spare:
            matches = match_unique(self.space, flat, list(wanted) * n, beam_size, self.decode_len)
        else:
            texts = self.decode(flat, beam_size)
            matches = [p.strip() == s.strip() for p, s in zip(texts, list(wanted) * n)]
        return [matches[row * t : (row + 1) * t] for row in range(n)]


def match_unique(space: Any, vectors: Tensor, wanted: Sequence[str], beam_size: int, max_len: int) -> list[bool]:
    """``space.decode_matches`` of each (row, wanted text), asking once for pairs that coincide bit for bit."""
    _, inverse = torch.unique(vectors, dim=0, return_inverse=True)
    keys = list(zip(inverse.tolist(), wanted))
    first: dict[tuple[int, str], int] = {}
    for n, key in enumerate(keys):
        first.setdefault(key, n)
    rows = torch.tensor(list(first.values()), device=vectors.device)
    found = space.decode_matches(vectors[rows], [w for _, w in first], beam_size=beam_size, max_len=max_len)
    answer = dict(zip(first, found))
    return [answer[key] for key in keys]


def decode_unique(space: Any, vectors: Tensor, beam_size: int, max_len: int = MAX_DECODE_LEN) -> list[str]:
    """``space.decode`` of each row, decoding bit-identical rows once.

    Queues often hold rows that coincide: every row starting from the same
    init text at step 0, and experiments differing only in ``steps`` until the
    shorter one ends. Each row decodes on its own (batching does not change a
    decode), so sharing the text is exact.
    """
    unique, inverse = torch.unique(vectors, dim=0, return_inverse=True)
    if unique.shape[0] == vectors.shape[0]:
        return space.decode(vectors, beam_size=beam_size, max_len=max_len)
    texts = space.decode(unique, beam_size=beam_size, max_len=max_len)
    return [texts[i] for i in inverse.tolist()]
