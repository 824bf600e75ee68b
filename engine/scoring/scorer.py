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

from engine.scoring.objectives import ROWS_PER_CALL, Weights, cosine_sims, objective_loss, rowwise
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
    fluency: Any = None  # engine.models.fluency.FluencyModel: the text terms, and text_nll in every result
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
        self,
        preds: Tensor,
        weights: Weights,
        *,
        sims: Tensor | None = None,
        cycle: tuple[Tensor, Tensor] | None = None,
        texts: Sequence[str] | None = None,
    ) -> Tensor:
        """[N] the objective of predictions [N, T, D] (differentiable), one row of ``weights`` per row.

        ``sims``: their :meth:`sims`, when already computed; ``cycle``: (z, E(D(z))) for the cycle term;
        ``texts``: the text each row scores, for the fluency and repetition terms.
        """
        text_terms = None
        if texts is not None and self.fluency is not None and (weights.uses("fluency") or weights.uses("repetition")):
            text_terms = (
                torch.tensor(self.fluency.nll(texts), device=preds.device),
                torch.tensor(self.fluency.repetition(texts), device=preds.device),
            )
        return objective_loss(
            preds,
            self.problem.targets,
            weights,
            sims=sims,
            scorer=self.space,
            tokens=self.problem.tokens,
            cycle=cycle,
            text_terms=text_terms,
        )

    def nll(self, texts: Sequence[str]) -> list[float] | None:
        """Each text's mean NLL per token under the fluency model (None without one)."""
        return None if self.fluency is None else self.fluency.nll(texts)

    def score_texts(self, texts: Sequence[str], weights: Weights | None = None) -> tuple[Tensor, Tensor]:
        """(sims [N], loss [N]) of texts in z's place (one encoder call), with the text terms when weighted."""
        return self.score(self.encode(texts), weights, texts=texts)

    def score(
        self,
        z: Tensor,
        weights: Weights | None = None,
        rows: int | None = None,
        texts: Sequence[str] | None = None,
    ) -> tuple[Tensor, Tensor]:
        """(sims [N], loss [N]) of z [N, D] without gradients; the loss is the objective when given, else -sims.

        ``weights`` hold one row per row of z (or one row for all of them); ``texts``: what each z embeds, for the
        text terms.
        """
        with torch.inference_mode():
            preds = self.predictions(z, rows)
            sims = self.sims(preds)
            mean = sims.mean(dim=1)
            if weights is None:
                return mean, -mean
            return mean, self.loss(preds, weights, sims=sims, texts=texts)

    def encode(self, texts: Sequence[str]) -> Tensor:
        """[N, D] float32 embeddings, each the same whatever else is encoded with it (:func:`encode_rowwise`)."""
        return encode_rowwise(self.space, texts)

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


def round_trip(space: Any, sentences: Sequence[str]) -> tuple[int, float]:
    """How many ``sentences`` decode back to themselves from their embedding, and the mean cosine of each
    embedding with the embedding of its decode: what says whether the models know a text at all."""
    with torch.inference_mode():
        vectors = space.encode(list(sentences)).float()
        texts = decode_unique(space, vectors, beam_size=1)
        again = space.encode(texts).float()
        sims = torch.nn.functional.cosine_similarity(vectors, again, dim=-1)
    exact = sum(t.strip() == s.strip() for t, s in zip(texts, sentences))
    return exact, float(sims.mean())


def encode_rowwise(space: Any, texts: Sequence[str], rows: int = ROWS_PER_CALL) -> Tensor:
    """[N, D] float32 embeddings of ``texts``, every encoder call ``rows`` texts of one token length.

    The encoder pads a call to its longest text, and padding (like the call's
    row count) moves the last bits of every row: a text's embedding would
    depend on what it was encoded with, and a method's path on what shares its
    batch (the cycle term's E(D(z)) did). Grouped by length and sent
    ``rows`` at a time (the last call filled with copies), no text is padded
    and every call has the shape of the text's own length: the
    :func:`engine.scoring.objectives.rowwise` invariant, for the encoder.
    """
    texts = list(texts)
    if not texts:
        return torch.empty(0, space.dim, device=space.device)
    by_length: dict[int, list[int]] = {}
    for i, text in enumerate(texts):
        by_length.setdefault(len(space.source_ids(text)), []).append(i)
    out: list[Tensor | None] = [None] * len(texts)
    with torch.inference_mode():
        for group in by_length.values():
            for start in range(0, len(group), rows):
                part = group[start : start + rows]
                call = [texts[i] for i in part] + [texts[part[0]]] * (rows - len(part))
                vectors = space.encode(call).float()
                for j, i in enumerate(part):
                    out[i] = vectors[j]
        return torch.stack(out)  # type: ignore[arg-type]


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
