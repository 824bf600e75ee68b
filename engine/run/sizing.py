"""How many experiments a batch may hold: a memory model of the models and of a row, and the rows that fit.

Off CUDA a batch holds at most :data:`engine.run.queue.MAX_BATCH` experiments, as it always has. On CUDA the
rows are what fits in the free device memory (:class:`DeviceLimit`, used by the inline executor):
:func:`row_bytes` estimates what one row of a batch adds at its peak (the activations its gradient keeps, its
decoder cross-entropy, its decodes, its candidates) from the loaded models' shapes and the story, and
:func:`rows_that_fit` divides the free memory by it, keeping a reserve; the log says what it chose and why.
docs/real-scale.md derives the terms and checks them against measured peaks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine import events as ev
from engine.scoring.problem import decode_limit
from engine.spec import Experiment, Story

F32 = 4  # bytes of the float32 copies (softmax, logits cast for the loss) whatever the model dtype
RESERVE_SHARE = 0.1  # of the free memory, kept for the allocator's fragmentation and what the estimate misses
RESERVE_BYTES = 1 << 30  # and this much more: the CUDA workspace, one bank chunk, the largest transient
MAX_ROWS = 256  # the most rows a batch holds on any card (beyond it a step only waits longer for its slowest row)
GB = 1e9


@dataclass(frozen=True)
class Shapes:
    """What a row's memory depends on, read off the loaded models once."""

    dim: int  # the sentence embedding and both SONAR models' width
    vocab: int  # rows of the decoder's output layer (and the encoder's table)
    encoder_layers: int
    encoder_ffn: int
    decoder_layers: int
    decoder_ffn: int
    hidden: int  # the predictor's
    q_width: int  # heads x head_dim
    kv_width: int  # key/value heads x head_dim
    intermediate: int
    predictor_layers: int
    begin: int  # 1 when the predictor puts "Begin of text." before the story
    dtype_bytes: int
    weights_bytes: int

    @classmethod
    def of(cls, space: Any, predictor: Any) -> Shapes:
        encoder = space.encoder_pipeline.model.encoder
        decoder = space.decoder.decoder
        llama = predictor.config.llama_config
        heads = llama["num_attention_heads"]
        head_dim = llama.get("head_dim") or llama["hidden_size"] // heads
        modules = (space.encoder_pipeline.model, space.decoder_pipeline.model, predictor)
        weights = sum(p.numel() * p.element_size() for m in modules for p in m.parameters())
        return cls(
            dim=int(space.dim),
            vocab=int(space.decoder.final_proj.weight.shape[0]),
            encoder_layers=len(encoder.layers),
            encoder_ffn=int(encoder.layers[0].ffn.inner_proj.weight.shape[0]),
            decoder_layers=len(decoder.layers),
            decoder_ffn=int(decoder.layers[0].ffn.inner_proj.weight.shape[0]),
            hidden=int(llama["hidden_size"]),
            q_width=heads * head_dim,
            kv_width=llama.get("num_key_value_heads", heads) * head_dim,
            intermediate=int(llama["intermediate_size"]),
            predictor_layers=int(llama["num_hidden_layers"]),
            begin=int(bool(getattr(predictor.config, "add_begin", False))),
            dtype_bytes=next(predictor.parameters()).element_size(),
            weights_bytes=weights,
        )


@dataclass(frozen=True)
class StoryTokens:
    """The story's lengths that a row's memory depends on."""

    positions: int  # the predictor's sequence: context, the sentences before z, z, those after it that are read
    targets: int
    target_tokens: int  # the longest target, in the decoder's tokens
    source_tokens: int  # the longest sentence, in the encoder's tokens (a candidate is about as long)
    decode_len: int  # the decodes' cap

    @classmethod
    def of(cls, story: Story, space: Any, begin: int) -> StoryTokens:
        _, lengths = space.tokenize_targets(list(story.sentences))
        lengths = [int(n) for n in lengths.tolist()]
        last = max(max(story.targets), story.optimize + 1)
        return cls(
            positions=begin + len(story.context) + last,
            targets=len(story.targets),
            target_tokens=max(lengths[t] for t in story.targets),
            source_tokens=max(space.source_lengths(list(story.sentences))),
            decode_len=decode_limit(lengths),
        )


def row_bytes(shapes: Shapes, story: StoryTokens, experiments: Sequence[Experiment]) -> int:
    """What one row of a batch of ``experiments`` (one method, the story's) adds to its peak memory, at most."""
    b = shapes.dtype_bytes
    # Decodes: z and its T predictions in one decoder call; per vector a key/value cache as long as the cap and
    # one step's logits (the model's, then float32 for the softmax and the argmax).
    per_vector = shapes.decoder_layers * 2 * shapes.dim * story.decode_len * b + shapes.vocab * (b + 2 * F32)
    total = (1 + story.targets) * per_vector
    method = experiments[0].method
    if method in ("gradient", "bank_swap"):
        # The predictor's activations kept for the backward pass, per position and layer: the residual and
        # normed inputs, q/k/v and their rotations, the attention, the MLP's gate, up and their product.
        layer = 6 * shapes.hidden + 3 * shapes.q_width + 3 * shapes.kv_width + 4 * shapes.intermediate
        total += story.positions * shapes.predictor_layers * layer * b
    if any(dict(e.objective.weights).get("decoder_ce", 0.0) for e in experiments) and method != "token_swap":
        # Teacher-forced decoder passes kept for the backward pass: per target token the layers' activations
        # and the logits, cast to float32 for the loss, with its softmax and gradient.
        layer = 10 * shapes.dim + 2 * shapes.decoder_ffn
        per_token = shapes.decoder_layers * layer * b + shapes.vocab * (b + 3 * F32)
        total += story.targets * story.target_tokens * per_token
    if method == "token_swap":
        # Candidates encoded together (one encoder call for every row's), a layer at a time.
        width = max(e.options.search_width for e in experiments)
        total += width * story.source_tokens * (4 * shapes.dim + shapes.encoder_ffn) * b
    return int(total)


def rows_that_fit(free_bytes: int, per_row: int, most: int = MAX_ROWS) -> int:
    """Rows of ``per_row`` bytes in ``free_bytes`` after the reserve: at least 1, at most ``most``."""
    budget = free_bytes * (1 - RESERVE_SHARE) - RESERVE_BYTES
    return max(1, min(most, math.floor(budget / max(per_row, 1))))


def batch_limit(models: Any, story: Story, experiments: Sequence[Experiment], free_bytes: int) -> tuple[int, str]:
    """(rows, why): how many of ``experiments`` a batch may hold with ``free_bytes`` of device memory free."""
    shapes = Shapes.of(models.space, models.predictor)
    tokens = StoryTokens.of(story, models.space, shapes.begin)
    per_row = row_bytes(shapes, tokens, experiments)
    rows = rows_that_fit(free_bytes, per_row)
    first = experiments[0]
    objective = "+".join(name for name, weight in first.objective.weights if weight)
    why = (
        f"batches of {first.method} ({objective}) on story {story.name}: up to {rows} rows, "
        f"{free_bytes / GB:.1f} GB free on the device and about {per_row / 1e6:.3g} MB a row"
        + (f" (at most {MAX_ROWS})" if rows == MAX_ROWS else "")
    )
    return rows, why


class DeviceLimit:
    """``Queue.next_batch``'s limit on a CUDA device: the rows that fit now; says once per kind of batch why.

    ``free_memory`` gives the device's free bytes (default: ``torch.cuda.mem_get_info``). A bank not
    loaded yet may take :data:`engine.banks.bank.DEVICE_SHARE` of it, so that share is not counted.
    """

    def __init__(
        self,
        models: Any,
        story_of: Callable[[Experiment], Story],
        loaded_banks: Callable[[str], bool],
        emit: Callable[[ev.Event], None],
        free_memory: Callable[[], int] | None = None,
    ) -> None:
        self.models, self.story_of, self.loaded_banks, self.emit = models, story_of, loaded_banks, emit
        self.free_memory = free_memory or (lambda: _cuda_free(models.space.device))
        self._said: dict[tuple[Any, ...], int] = {}

    def __call__(self, experiments: list[Experiment]) -> int:
        from engine.banks.bank import DEVICE_SHARE

        first = experiments[0]
        free = self.free_memory()
        if first.bank is not None and not self.loaded_banks(first.bank):
            free = int(free * (1 - DEVICE_SHARE))
        rows, why = batch_limit(self.models, self.story_of(first), experiments, free)
        kind = (first.story, first.method, tuple(sorted({w for e in experiments for w, _ in e.objective.weights})))
        if self._said.get(kind) != rows:
            self._said[kind] = rows
            self.emit(ev.BatchLimit(rows, why))
        return rows


def device_limit(models: Any, **kwargs: Any) -> DeviceLimit | None:
    """A :class:`DeviceLimit` when the models run on CUDA; None elsewhere (batches keep MAX_BATCH)."""
    return DeviceLimit(models, **kwargs) if models.space.device.type == "cuda" else None


def _cuda_free(device: Any) -> int:
    import torch

    return int(torch.cuda.mem_get_info(device)[0])
