"""A lean greedy decoder for SONAR text decoders.

It gives exactly the strings of sonar's
``EmbeddingToTextModelPipeline.predict(vectors, sampler=TopKSampler(k=1), ...)``
(fairseq2 0.8.1's ``SamplingSeq2SeqGenerator`` with its defaults) by running
the same tensor operations on the same shapes: the target prefix
``</s> __eng_Latn__`` prefilled, one token per step through a key/value cache
grown in blocks of 16 like fairseq2's, ``logits / temperature`` and a float32
softmax before the argmax (rounding there can tie two candidates, and argmax
then takes the first), PAD never chosen, EOS forced at the last step, rows
dropped from the batch as they end. What it leaves out is the per-step module,
layout and hook plumbing, most of a decode's time on small decoders, and the
cross-attention after the first step: over a single key (the sentence vector)
its softmax is exactly 1, so its output is out_proj(v) of the live rows,
computed once per batch shape. That holds while no score can overflow (checked
per call from a bound on the queries) and where the device's attention kernel
returns v bit for bit (probed once); otherwise each step attends as fairseq2 does.
Asked whether each row decodes to a wanted text, it also drops a row at the first
token that rules that out, which the generator cannot do.

Configurations it does not cover get ``None`` from :func:`lean_greedy`, and
calls it cannot honour (non-finite vectors or logits, lengths the generator
refuses) get ``None`` from the decoder; the caller then uses the pipeline.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

LayerNorm = Callable[[Tensor], Tensor]
Proj = tuple[Tensor, Tensor | None]  # weight, bias


@dataclass(frozen=True)
class _Attention:
    q: Proj
    k: Proj
    v: Proj
    out: Proj
    head_dim: int


@dataclass(frozen=True)
class _Layer:
    self_norm: LayerNorm
    self_attn: _Attention
    cross_norm: LayerNorm
    cross_attn: _Attention
    cross_q_bound: float  # an upper bound of |q| over every possible cross-attention query
    ffn_norm: LayerNorm
    inner: Proj
    outer: Proj


class _Cache:
    """One self-attention layer's keys and values, stored as fairseq2's FullAttentionState does."""

    INCREMENT = 16

    def __init__(self, k: Tensor, v: Tensor) -> None:
        n, length, heads, dim = k.shape
        capacity = -(-length // self.INCREMENT) * self.INCREMENT
        self.k, self.v = k.new_empty((n, capacity, heads, dim)), v.new_empty((n, capacity, heads, dim))
        self.k[:, :length], self.v[:, :length] = k, v
        self.length = length

    def append(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor]:
        end = self.length + k.size(1)
        if end > self.k.size(1):
            capacity = -(-end // self.INCREMENT) * self.INCREMENT
            grown_k = self.k.new_empty((self.k.size(0), capacity, *self.k.shape[2:]))
            grown_v = self.v.new_empty((self.v.size(0), capacity, *self.v.shape[2:]))
            grown_k[:, : self.length], grown_v[:, : self.length] = self.k[:, : self.length], self.v[:, : self.length]
            self.k, self.v = grown_k, grown_v
        self.k.narrow(1, self.length, k.size(1)).copy_(k)
        self.v.narrow(1, self.length, v.size(1)).copy_(v)
        self.length = end
        return self.k.narrow(1, 0, end), self.v.narrow(1, 0, end)

    def keep(self, rows: Tensor) -> None:
        self.k, self.v = self.k.index_select(0, rows), self.v.index_select(0, rows)


def _heads(x: Tensor, head_dim: int) -> Tensor:
    """[N, S, H * K] -> [N, S, H, K], the view fairseq2's ``unflatten`` makes."""
    return x.view(x.size(0), x.size(1), -1, head_dim)


def _attend(q: Tensor, k: Tensor, v: Tensor, is_causal: bool) -> Tensor:
    """fairseq2's TorchSDPA on [N, S, H, K] tensors (no mask: a single query never needs one)."""
    out = F.scaled_dot_product_attention(
        q.transpose(-2, -3),
        k.transpose(-2, -3),
        v.transpose(-2, -3),
        attn_mask=None,
        dropout_p=0.0,
        is_causal=is_causal,
    )
    return out.transpose(-2, -3).flatten(-2, -1)


class GreedyDecoder:
    """Batched greedy decoding of sentence embeddings [N, D] to text."""

    def __init__(
        self,
        *,
        embed: Tensor,
        pad_idx: int | None,
        scale: float,
        freqs: Tensor | None,
        layers: list[_Layer],
        final_norm: LayerNorm | None,
        final_proj: Proj,
        sentemb_proj: Callable[[Tensor], Tensor] | None,
        max_target_len: int,
        prefix: Tensor,
        vocab: Any,
        temperature: float,
        max_gen_len: tuple[float, int],
        to_text: Callable[[Tensor], str],
        precision: Callable[[], Any],
        single_key_is_v: bool,
    ) -> None:
        self.embed, self.pad_idx, self.scale, self.freqs = embed, pad_idx, scale, freqs
        self.layers, self.final_norm, self.final_proj, self.sentemb_proj = layers, final_norm, final_proj, sentemb_proj
        self.max_target_len, self.prefix = max_target_len, prefix
        self.eos, self.pad = vocab.eos_idx, vocab.pad_idx
        self.temperature, self.max_gen_len = temperature, max_gen_len
        self.to_text, self.precision = to_text, precision
        self.single_key_is_v = single_key_is_v
        # Scores below this cannot overflow in the model dtype (or anywhere near it).
        self.score_limit = torch.finfo(embed.dtype).max * 1e-8

    def __call__(
        self, vectors: Tensor, max_seq_len: int, wanted: Sequence[str] | None = None
    ) -> list[str | None] | None:
        """The pipeline's texts for ``vectors`` (already on the model's device and dtype), or None.

        With ``wanted`` (a text per row), a row stops as soon as its text cannot become its wanted
        one (up to surrounding spaces) and its text is None: what an exact-match check needs.
        """
        if not bool(torch.isfinite(vectors).all()):
            return None
        prompt = self.prefix.size(0)
        # SamplingSeq2SeqGenerator: max_gen_len = a * source length + b, the source being [N, D] (length D).
        a, b = self.max_gen_len
        limit = min(min(max_seq_len, self.max_target_len), prompt + int(a * vectors.size(1) + b))
        if prompt >= limit or prompt < 1:
            return None  # the generator raises here; let it
        with torch.inference_mode(), self.precision():
            return self._generate(vectors, prompt, limit, wanted)

    def _generate(
        self, vectors: Tensor, prompt: int, limit: int, wanted: Sequence[str] | None
    ) -> list[str | None] | None:
        n = vectors.size(0)
        memory = vectors.unsqueeze(1)
        if self.sentemb_proj is not None:
            memory = self.sentemb_proj(memory)
        # The cross-attention keys and values, as the first forward would project them.
        cross_v = [F.linear(memory, *layer.cross_attn.v) for layer in self.layers]
        cross_k = [_heads(F.linear(memory, *layer.cross_attn.k), layer.cross_attn.head_dim) for layer in self.layers]
        # One key: the softmax is exactly 1 and the attention exactly v, so after the first forward each step's
        # cross-attention output is out_proj(v) of the live rows: computed once per batch shape, not per step.
        constant = self.single_key_is_v and self._scores_finite(cross_k)
        prefix = self.prefix.expand(n, -1)
        caches: list[_Cache] = []
        if prompt > 1:  # prefill all prefix tokens but the last, as the generator does
            logits = self._forward(prefix[:, : prompt - 1], 0, caches, cross_k, cross_v, None)
            logits /= self.temperature
            if F.softmax(logits, dim=-1, dtype=torch.float32).isnan().any():
                return None
        cross_out = self._cross_out(cross_v) if constant else None
        texts: list[str | None] = [""] * n
        rows = list(range(n))  # original index of each live row
        generated: list[list[int]] = [[] for _ in range(n)]
        tokens = prefix[:, prompt - 1 : prompt]
        for step in range(prompt, limit):
            logits = self._forward(tokens, step - 1, caches, cross_k, cross_v, cross_out)
            logits /= self.temperature
            probs = F.softmax(logits, dim=-1, dtype=torch.float32).squeeze_(1)
            if probs.isnan().any():
                return None  # the generator raises SequenceGenerationError
            if step == limit - 1:
                chosen = probs.new_full((probs.size(0),), self.eos, dtype=torch.int64)
            else:
                if self.pad is not None:
                    probs[:, self.pad] = 0
                chosen = torch.argmax(probs, dim=-1)
            ids = chosen.tolist()
            keep = []
            for j, (row, token) in enumerate(zip(rows, ids)):
                generated[row].append(token)
                if token == self.eos:
                    texts[row] = self._text(generated[row], vectors.device)
                elif wanted is not None and _ruled_out(self._text(generated[row], vectors.device), wanted[row]):
                    texts[row] = None
                else:
                    keep.append(j)
            if not keep:
                break
            tokens = chosen.unsqueeze(1)
            if len(keep) < len(rows):  # ended rows leave the batch, as in the generator
                order = torch.tensor(keep, device=vectors.device)
                for cache in caches:
                    cache.keep(order)
                cross_k = [k.index_select(0, order) for k in cross_k]
                cross_v = [v.index_select(0, order) for v in cross_v]
                if cross_out is not None:
                    cross_out = self._cross_out(cross_v)
                tokens = tokens.index_select(0, order)
                rows = [rows[j] for j in keep]
        return texts

    def _text(self, ids: list[int], device: torch.device) -> str:
        return self.to_text(torch.tensor(ids, dtype=torch.int64, device=device))

    def _scores_finite(self, cross_k: list[Tensor]) -> bool:
        """Whether no cross-attention score q.k can overflow (then the softmax of one key is exactly 1)."""
        k_max = torch.stack([k.float().norm(dim=-1).max() for k in cross_k]).tolist()
        return all(km * layer.cross_q_bound < self.score_limit for km, layer in zip(k_max, self.layers))

    def _cross_out(self, cross_v: list[Tensor]) -> list[Tensor]:
        return [F.linear(v, *layer.cross_attn.out) for v, layer in zip(cross_v, self.layers)]

    def _forward(
        self,
        tokens: Tensor,
        position: int,
        caches: list[_Cache],
        cross_k: list[Tensor],
        cross_v: list[Tensor],
        cross_out: list[Tensor] | None,
    ) -> Tensor:
        """Logits [N, L, V] for ``tokens`` [N, L] at ``position``, extending the caches (filled on the first call)."""
        first = not caches
        x = F.embedding(tokens, self.embed, self.pad_idx)
        if self.scale != 1.0:
            x = x * self.scale
        if self.freqs is not None:
            x = (x.float() + self.freqs[1 + position : 1 + position + tokens.size(1)].unsqueeze(0)).type_as(x)
        for i, layer in enumerate(self.layers):
            attn = layer.self_attn
            h = layer.self_norm(x)
            q = _heads(F.linear(h, *attn.q), attn.head_dim)
            k = _heads(F.linear(h, *attn.k), attn.head_dim)
            v = _heads(F.linear(h, *attn.v), attn.head_dim)
            if first:
                caches.append(_Cache(k, v))
            else:
                k, v = caches[i].append(k, v)
            x = F.linear(_attend(q, k, v, is_causal=q.size(1) == k.size(1)), *attn.out) + x
            if cross_out is not None:
                x = cross_out[i] + x
            else:
                attn = layer.cross_attn
                q = _heads(F.linear(layer.cross_norm(x), *attn.q), attn.head_dim)
                v = _heads(cross_v[i], attn.head_dim)
                x = F.linear(_attend(q, cross_k[i], v, is_causal=False), *attn.out) + x
            h = torch.relu(F.linear(layer.ffn_norm(x), *layer.inner))
            x = F.linear(h, *layer.outer) + x
        if self.final_norm is not None:
            x = self.final_norm(x)
        return F.linear(x, *self.final_proj)


def _ruled_out(partial: str, wanted: str) -> bool:
    """Whether a decode whose text so far is ``partial`` can no longer end as ``wanted`` (up to surrounding spaces).

    Detokenising appends text as tokens come (special tokens add none), so a text that ends as
    ``wanted`` passes through prefixes of it; a split multi-byte character (U+FFFD) decides nothing yet.
    """
    return "\ufffd" not in partial and not wanted.strip().startswith(partial.strip())


def _single_key_is_v(head_dim: int, heads: int, device: torch.device, dtype: torch.dtype, precision: Any) -> bool:
    """Whether this device's attention over one key returns that key's value bit for bit (it should: softmax = 1).

    Probed under the pipeline's matmul precision: with TF32 products it would not.
    """
    g = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn((5, 1, heads, head_dim), generator=g).to(device, dtype) for _ in range(3))
    with torch.inference_mode(), precision:
        return bool(torch.equal(_attend(q, k, v, is_causal=False), v.flatten(-2, -1)))


def _q_bound(norm: Any, q_proj: Any) -> float:
    """|W LN(x) + b| <= |W|_F (sqrt(D) max|gamma| + |beta|) + |b|, since |LN's normalised x| <= sqrt(D)."""
    w, b = q_proj.weight.double(), q_proj.bias
    gamma = float(norm.weight.double().abs().max()) if norm.weight is not None else 1.0
    beta = float(norm.bias.double().norm()) if norm.bias is not None else 0.0
    bias = float(b.double().norm()) if b is not None else 0.0
    return float(w.norm()) * (w.size(1) ** 0.5 * gamma + beta) + bias


def lean_greedy(decoder: Any, tokenizer: Any, *, target_lang: str) -> GreedyDecoder | None:
    """A :class:`GreedyDecoder` for a sonar ConditionalTransformerDecoderModel in eval mode; None: not covered."""
    try:
        return _build(decoder, tokenizer, target_lang)
    except _NotCovered:
        return None


class _NotCovered(Exception):
    pass


def _require(condition: bool) -> None:
    if not condition:
        raise _NotCovered


def _build(decoder: Any, tokenizer: Any, target_lang: str) -> GreedyDecoder:
    from fairseq2.generation.sampling import SamplingSeq2SeqGenerator
    from fairseq2.models.transformer import (
        CausalAttentionBias,
        IdentityBias,
        StandardFeedForwardNetwork,
        StandardMultiheadAttention,
        StandardTransformerDecoder,
        StandardTransformerDecoderLayer,
        TorchSDPA,
        TransformerEmbeddingFrontend,
        TransformerNormOrder,
    )
    from fairseq2.nn import (
        AdditiveResidualConnect,
        ColumnShardedLinear,
        Linear,
        RowShardedLinear,
        SinusoidalPositionEncoder,
        StandardEmbedding,
        StandardLayerNorm,
        TiedProjection,
    )
    from sonar.inference_pipelines.text import precision_context

    _require(not decoder.training)
    _require(all(not m._forward_hooks and not m._forward_pre_hooks for m in decoder.modules()))

    def dropout_free(module: Any) -> None:  # None where fairseq2 has no dropout; in eval mode Dropout is identity
        _require(module is None or isinstance(module, torch.nn.Dropout))

    def proj(module: Any) -> Proj:
        _require(type(module) in (Linear, ColumnShardedLinear, RowShardedLinear, TiedProjection))
        _require(not getattr(module, "sharded", False))
        return module.weight, module.bias

    def norm(module: Any) -> LayerNorm:
        _require(type(module) is StandardLayerNorm)
        shape, w, b, eps = module.normalized_shape, module.weight, module.bias, module.eps
        if not module.cast_fp32:
            return lambda x: F.layer_norm(x, shape, w, b, eps)
        wf, bf = (w.float() if w is not None else None), (b.float() if b is not None else None)
        return lambda x: F.layer_norm(x.float(), shape, wf, bf, eps).type(x.dtype)

    def attention(module: Any, bias_type: type) -> _Attention:
        _require(type(module) is StandardMultiheadAttention)
        _require(module.q_norm is None and module.k_norm is None and module.v_norm is None)
        _require(module.pos_encoder is None and module.state_factory is None and module.num_query_groups == 1)
        _require(not module._attn_weight_hooks)
        sdpa = module.sdpa
        _require(type(sdpa) is TorchSDPA and sdpa.scale is None and type(sdpa.bias) is bias_type)
        _require(getattr(sdpa.bias, "attn_window_len", None) is None)
        return _Attention(
            proj(module.q_proj), proj(module.k_proj), proj(module.v_proj), proj(module.output_proj), module.head_dim
        )

    frontend = decoder.decoder_frontend
    _require(type(frontend) is TransformerEmbeddingFrontend)
    dropout_free(frontend.dropout)
    embed = frontend.embed
    _require(type(embed) is StandardEmbedding)
    pos = frontend.pos_encoder
    _require(pos is None or (type(pos) is SinusoidalPositionEncoder and pos.max_seq_len >= decoder.max_target_seq_len))

    stack = decoder.decoder
    _require(type(stack) is StandardTransformerDecoder and not stack._layer_hooks)
    dropout_free(stack.dropout)
    layers = []
    for layer in stack.layers:
        _require(type(layer) is StandardTransformerDecoderLayer and layer.norm_order == TransformerNormOrder.PRE)
        for name in ("self_attn", "encoder_decoder_attn", "ffn"):
            _require(type(getattr(layer, f"{name}_residual")) is AdditiveResidualConnect)
            dropout_free(getattr(layer, f"{name}_dropout"))
        ffn = layer.ffn
        _require(type(ffn) is StandardFeedForwardNetwork and type(ffn.inner_activation) is torch.nn.ReLU)
        _require(getattr(ffn, "inner_layer_norm", None) is None)
        dropout_free(ffn.inner_dropout)
        layers.append(
            _Layer(
                norm(layer.self_attn_layer_norm),
                attention(layer.self_attn, CausalAttentionBias),
                norm(layer.encoder_decoder_attn_layer_norm),
                attention(layer.encoder_decoder_attn, IdentityBias),
                _q_bound(layer.encoder_decoder_attn_layer_norm, layer.encoder_decoder_attn.q_proj),
                norm(layer.ffn_layer_norm),
                proj(ffn.inner_proj),
                proj(ffn.output_proj),
            )
        )

    defaults = {k: p.default for k, p in inspect.signature(SamplingSeq2SeqGenerator.__init__).parameters.items()}
    _require(defaults["min_gen_len"] == 1 and defaults["unk_penalty"] == 0.0 and defaults["num_gens"] == 1)
    _require(defaults["decode_capacity_increment"] == _Cache.INCREMENT and not defaults["step_processors"])
    device = embed.weight.device
    prefix = tokenizer.create_encoder(task="translation", lang=target_lang, mode="target", device=device).prefix_indices
    _require(prefix is not None and prefix.ndim == 1 and 2 <= prefix.size(0) <= defaults["prefill_chunk_size"] + 1)
    dtype = next(decoder.parameters()).dtype

    return GreedyDecoder(
        embed=embed.weight,
        pad_idx=embed.pad_idx,
        scale=frontend.scale,
        freqs=pos.freqs if pos is not None else None,
        layers=layers,
        final_norm=norm(stack.layer_norm) if stack.layer_norm is not None else None,
        final_proj=proj(decoder.final_proj),
        sentemb_proj=decoder.post_sentemb_proj,
        max_target_len=int(decoder.max_target_seq_len),
        prefix=prefix,
        vocab=tokenizer.vocab_info,
        temperature=float(defaults["temperature"]),
        max_gen_len=defaults["max_gen_len"],
        to_text=tokenizer.create_decoder(skip_special_tokens=True),
        precision=lambda: precision_context(dtype),
        single_key_is_v=all(
            _single_key_is_v(
                layer.cross_attn.head_dim,
                layer.cross_attn.q[0].size(0) // layer.cross_attn.head_dim,
                device,
                dtype,
                precision_context(dtype),
            )
            for layer in layers
        ),
    )
