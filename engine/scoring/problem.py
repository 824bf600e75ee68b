"""The story around z, embedded once: what a batch's predictions are made from and scored against."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from engine.models.fast_llama import lean_forward
from engine.models.predictor import BEGIN_TEXT
from engine.scoring.objectives import TargetTokens

if TYPE_CHECKING:
    from engine.spec import Objective, Story


@dataclass(frozen=True)
class Problem:
    """What is constant for a batch: the story around z, embedded once."""

    prefix: Tensor  # [P, D] context (+ BEGIN_TEXT) and the sentences before z, model dtype
    suffix: Tensor  # [S, D] the sentences after z that later targets need
    targets: Tensor  # [T, D] float32 embeddings of the scored sentences
    positions: Tensor  # [T] output position predicting each target
    target_texts: tuple[str, ...]
    oracle: Tensor  # [D] the true embedding of the replaced sentence
    story_norms: Tensor  # [N] L2 norms of the story's sentence embeddings
    tokens: TargetTokens | None  # target tokens, only when some row uses decoder_ce
    decode_len: int  # the decodes' cap in tokens: twice the story's longest sentence, at least DECODE_FLOOR


# The floor of a decode's cap, for stories of short sentences: twice the longest decode the shipped queue makes on
# the mini models (16 tokens), so such a story still keeps every decode its model ends by itself.
DECODE_FLOOR = 32


def decode_limit(sentence_lengths: Sequence[int]) -> int:
    """The cap of a story's decodes: a decode twice as long as its longest sentence is lost anyway."""
    return max(DECODE_FLOOR, 2 * max(sentence_lengths, default=0))


def build_problem(story: Story, space: Any, predictor: Any, *, need_tokens: bool) -> Problem:
    prefix_texts = list(story.context)
    if getattr(predictor.config, "add_begin", False) and prefix_texts[:1] != [BEGIN_TEXT]:
        prefix_texts.insert(0, BEGIN_TEXT)
    offset = len(prefix_texts)
    positions = [offset + t - 1 for t in story.targets]
    if min(positions) < 0:
        raise ValueError(f"story {story.name!r}: target 0 has no preceding sentence to predict it from")
    embedded = space.encode(prefix_texts + list(story.sentences)).to(dtype=space.dtype)
    context, sentences = embedded[:offset], embedded[offset:]
    last = max(max(story.targets), story.optimize + 1)  # sentences at indices >= last are never read
    predictor_dtype = next(predictor.parameters()).dtype
    tokens = None
    if need_tokens:
        ids, lens = space.tokenize_targets([story.sentences[t] for t in story.targets])
        tokens = TargetTokens(ids, lens)
    _, story_lens = space.tokenize_targets(list(story.sentences))
    return Problem(
        prefix=torch.cat([context, sentences[: story.optimize]]).to(predictor_dtype),
        suffix=sentences[story.optimize + 1 : last].to(predictor_dtype),
        targets=sentences[list(story.targets)].float(),
        positions=torch.tensor(positions, device=embedded.device),
        target_texts=tuple(story.sentences[t] for t in story.targets),
        oracle=sentences[story.optimize].float(),
        story_norms=sentences.float().norm(dim=1),
        tokens=tokens,
        decode_len=decode_limit(story_lens.tolist()),
    )


def predict(model: Callable[[Tensor], Tensor], problem: Problem, z: Tensor) -> Tensor:
    """[A, T, D] float32 predictions of the targets with z [A, D] in place of the replaced sentence.

    ``model`` is the predictor or its :func:`fast_forward` (same function, fewer operations).
    """
    a = z.shape[0]
    seq = torch.cat(
        [
            problem.prefix.expand(a, -1, -1),
            z.to(problem.prefix.dtype).unsqueeze(1),
            problem.suffix.expand(a, -1, -1),
        ],
        dim=1,
    )
    return model(seq)[:, problem.positions].float()


_fast: weakref.WeakKeyDictionary[Any, Callable[[Tensor], Tensor]] = weakref.WeakKeyDictionary()


def fast_forward(predictor: Any) -> Callable[[Tensor], Tensor]:
    """The predictor's lean forward (engine.models.fast_llama) when its config allows, else the predictor; made once."""
    if predictor not in _fast:
        try:
            lean = lean_forward(predictor)
        except (AttributeError, TypeError, ValueError):  # a predictor shaped unlike SONAR-LLM: its own forward
            lean = None
        _fast[predictor] = lean or predictor
    return _fast[predictor]


def needs_tokens(objectives: Sequence[Objective]) -> bool:
    return any(dict(o.weights).get("decoder_ce", 0.0) != 0.0 for o in objectives)
