"""Sizes, configs and batching for the mini encoder, decoder and predictor.

The encoder and decoder are sonar-space's own SONAR text models (the ``basic``
architecture with small sizes), created by the same hubs that load them from the
asset cards, so the overrides written to the cards rebuild exactly these models.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

TARGET_NORM = 0.207  # mean L2 norm of SONAR embeddings of TinyStories sentences


@dataclass(frozen=True)
class Sizes:
    model_dim: int = 128
    encoder_layers: int = 2
    decoder_layers: int = 2
    heads: int = 4
    ffn_dim: int = 512
    max_seq_len: int = 64
    predictor_hidden: int = 128
    predictor_layers: int = 4
    predictor_heads: int = 4
    predictor_ffn: int = 512


def _vocab_override(vocab_info: Any) -> dict[str, int | None]:
    return {
        "size": vocab_info.size,
        "unk_idx": vocab_info.unk_idx,
        "bos_idx": vocab_info.bos_idx,
        "eos_idx": vocab_info.eos_idx,
        "pad_idx": vocab_info.pad_idx,
    }


def _override(layers: int, sizes: Sizes, vocab_info: Any) -> dict[str, Any]:
    """Fields of the ``basic`` config that a card overrides (encoder and decoder configs share the names)."""
    return {
        "model_dim": sizes.model_dim,
        "max_seq_len": sizes.max_seq_len,
        "num_encoder_layers": layers,
        "num_decoder_layers": layers,
        "num_encoder_attn_heads": sizes.heads,
        "num_decoder_attn_heads": sizes.heads,
        "ffn_inner_dim": sizes.ffn_dim,
        "emb_dropout_p": 0.0,
        "attention_dropout_p": 0.0,
        "activation_dropout_p": 0.0,
        "vocab_info": _vocab_override(vocab_info),
    }


def encoder_override(sizes: Sizes, vocab_info: Any) -> dict[str, Any]:
    return _override(sizes.encoder_layers, sizes, vocab_info)


def decoder_override(sizes: Sizes, vocab_info: Any) -> dict[str, Any]:
    return _override(sizes.decoder_layers, sizes, vocab_info)


def _config(hub: Any, override: dict[str, Any]) -> Any:
    from fairseq2.data.tokenizers import VocabularyInfo

    fields = dict(override)
    fields["vocab_info"] = VocabularyInfo(**fields["vocab_info"])
    return dataclasses.replace(hub.get_arch_config("basic"), **fields)


def create_encoder(sizes: Sizes, vocab_info: Any, **placement: Any) -> torch.nn.Module:
    """A random-init encoder; ``placement``: ``device`` and ``dtype`` to create it in (default: CPU, float32)."""
    from sonar.models.sonar_text import get_sonar_text_encoder_hub

    hub = get_sonar_text_encoder_hub()
    return hub.create_new_model(_config(hub, encoder_override(sizes, vocab_info)), **placement)


def create_decoder(sizes: Sizes, vocab_info: Any, **placement: Any) -> torch.nn.Module:
    """A random-init decoder; ``placement`` as for :func:`create_encoder`."""
    from sonar.models.sonar_text import get_sonar_text_decoder_hub

    hub = get_sonar_text_decoder_hub()
    return hub.create_new_model(_config(hub, decoder_override(sizes, vocab_info)), **placement)


def llama_config(sizes: Sizes) -> dict[str, Any]:
    return {
        "hidden_size": sizes.predictor_hidden,
        "intermediate_size": sizes.predictor_ffn,
        "num_hidden_layers": sizes.predictor_layers,
        "num_attention_heads": sizes.predictor_heads,
        "num_key_value_heads": sizes.predictor_heads,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
    }


def pad_batch(seqs: Sequence[Tensor], pad_idx: int) -> tuple[Tensor, list[int]]:
    lens = [len(s) for s in seqs]
    out = torch.full((len(seqs), max(lens)), pad_idx, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out, lens


def encode_batch(encoder: torch.nn.Module, ids: Tensor, lens: list[int]) -> Tensor:
    from fairseq2.nn import BatchLayout

    return encoder(ids, BatchLayout.of(ids, lens)).sentence_embeddings


def decoder_nll(decoder: torch.nn.Module, vectors: Tensor, ids: Tensor, lens: list[int], pad_idx: int) -> Tensor:
    """Mean teacher-forced token cross-entropy per row; ``ids`` in target mode."""
    from fairseq2.nn import BatchLayout

    src = vectors.unsqueeze(1)
    inp = ids[:, :-1]
    logits = decoder(src, BatchLayout.of(src), inp, BatchLayout.of(inp, [n - 1 for n in lens]))
    target = ids[:, 1:]
    nll = torch.nn.functional.cross_entropy(
        logits.transpose(1, 2).float(), target, ignore_index=pad_idx, reduction="none"
    )
    mask = (target != pad_idx).float()
    return (nll * mask).sum(1) / mask.sum(1)


def fold_norm(encoder: torch.nn.Module, decoder: torch.nn.Module, scale: float) -> None:
    """Multiply embeddings by ``scale`` inside the weights, keeping decoding identical.

    The encoder's last step before pooling is its final layer norm, so scaling that
    norm's affine weights scales every sentence vector. The decoder reads the vector
    only through the key/value projections of its cross-attention (one key, so the
    attention weight is always 1), whose weights absorb the inverse scale.
    """
    with torch.no_grad():
        encoder.layer_norm.weight.mul_(scale)
        encoder.layer_norm.bias.mul_(scale)
        for layer in decoder.decoder.layers:
            attn = layer.encoder_decoder_attn
            attn.k_proj.weight.div_(scale)
            attn.v_proj.weight.div_(scale)
