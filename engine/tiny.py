"""Random-init SONAR-architecture assets written as real fairseq2 cards.

Tests use them to exercise the card-loading path without the shipped mini
weights (and to prove that the real card names resolve through ``@user``
overlays); the GPU shape check builds the real ``basic`` size this way.
Nothing here is trained: decodes are gibberish, shapes and code paths are real.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch

from engine.predictors import PredictorConfig, SonarLLMPredictor, save_predictor

TOKENIZER_FILE = "tiny.spm.model"
SAMPLE_TEXT = (
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside with her toys.",
    "One day, she saw a big tree in the sky.",
    "I like cheese.",
    "There was a boy named Tom.",
    "Begin of text.",
    "The dog ran to the park and played with a red ball.",
    "Mom said, \"No, you can't climb the tree. It's too high.\"",
)


@dataclass(frozen=True)
class TinySize:
    model_dim: int = 32
    layers: int = 1
    heads: int = 2
    ffn: int = 64
    vocab: int = 120
    max_seq_len: int = 64


def train_tokenizer(path: Path, sentences: Sequence[str], vocab_size: int) -> None:
    """An NLLB-layout sentencepiece model (ids: unk 0, bos 1, eos 2, no pad)."""
    import sentencepiece as spm

    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(list(sentences) * 4),
        model_prefix=str(path.with_suffix("")),
        vocab_size=vocab_size,
        model_type="bpe",
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
        num_threads=1,
    )


def _model_overrides(size: TinySize, vocab_size: int, decoder: bool) -> dict[str, object]:
    layers = "num_decoder_layers" if decoder else "num_encoder_layers"
    heads = "num_decoder_attn_heads" if decoder else "num_encoder_attn_heads"
    return {
        "model_dim": size.model_dim,
        "ffn_inner_dim": size.ffn,
        layers: size.layers,
        heads: size.heads,
        "max_seq_len": size.max_seq_len,
        "vocab_info": {"size": vocab_size},
    }


def _card(name: str, family: str, checkpoint: str, tokenizer: str, overrides: dict[str, object]) -> str:
    lines = [
        f"name: {name}",
        f"model_family: {family}",
        "model_arch: basic",
        f"checkpoint: {checkpoint}",
        f"tokenizer: {tokenizer}",
        "tokenizer_family: nllb",
        "tokenizer_config:",
        "  _set_:",
        "    default_lang: eng_Latn",
        "    langs: [eng_Latn]",
        "model_config_override:",
    ]
    for key, value in overrides.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k}: {v}" for k, v in value.items())
            lines.append(f"  {key}: {{{inner}}}")
        else:
            lines.append(f"  {key}: {value}")
    return "\n".join(lines) + "\n"


def write_tiny_space(
    out_dir: str | Path,
    *,
    encoder_name: str = "tiny_encoder",
    decoder_name: str = "tiny_decoder",
    size: TinySize = TinySize(),
    sentences: Sequence[str] = SAMPLE_TEXT,
    seed: int = 0,
) -> Path:
    """Write tokenizer, random-init encoder/decoder checkpoints and their cards; returns the card file."""
    from fairseq2.data.tokenizers import load_tokenizer  # noqa: F401  (fairseq2 must import before sonar factories)
    from sonar.models.sonar_text import get_sonar_text_decoder_hub, get_sonar_text_encoder_hub

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    spm_path = out / TOKENIZER_FILE
    train_tokenizer(spm_path, sentences, size.vocab)
    import sentencepiece as spm

    pieces = spm.SentencePieceProcessor(model_file=str(spm_path)).get_piece_size()
    vocab_size = pieces + 1 + 1 + 3  # + pad + one language token + NLLB's extra symbols (see facts file)
    torch.manual_seed(seed)
    cards = []
    for name, hub, family, is_decoder in (
        (encoder_name, get_sonar_text_encoder_hub(), "transformer_encoder", False),
        (decoder_name, get_sonar_text_decoder_hub(), "transformer_decoder", True),
    ):
        overrides = _model_overrides(size, vocab_size, is_decoder)
        base = hub.get_arch_config("basic")
        vocab_info = dataclasses.replace(base.vocab_info, size=vocab_size)
        config = dataclasses.replace(base, **{**overrides, "vocab_info": vocab_info})
        model = hub.create_new_model(dataclasses.replace(config))
        checkpoint = f"{name.split('@')[0]}.pt"
        torch.save(model.state_dict(), out / checkpoint)
        cards.append(_card(name, family, checkpoint, TOKENIZER_FILE, overrides))
    card_file = out / "tiny_cards.yaml"
    card_file.write_text("---\n".join(cards), encoding="utf-8")
    return card_file


def write_tiny_predictor(
    out_dir: str | Path, *, embed_dim: int = 32, hidden: int = 32, layers: int = 1, heads: int = 2, seed: int = 0,
    add_begin: bool = False,
) -> Path:
    """A random-init predictor directory in the SONAR-LLM layout."""
    torch.manual_seed(seed)
    llama = {
        "hidden_size": hidden,
        "intermediate_size": hidden * 2,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "max_position_embeddings": 64,
        "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "mlp_bias": False,
        "hidden_act": "silu",
    }
    model = SonarLLMPredictor(PredictorConfig(llama, embed_dim, add_begin))
    save_predictor(model, out_dir)
    return Path(out_dir)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m engine.tiny OUT_DIR``: write tiny cards + predictor in a fresh process.

    fairseq2 reads the card directories once, when its asset store is first
    built, so cards must exist before a process that loads them starts.
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--prefix", default="tiny", help="card names are PREFIX_encoder / PREFIX_decoder")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    write_tiny_space(args.out_dir, encoder_name=f"{args.prefix}_encoder", decoder_name=f"{args.prefix}_decoder")
    write_tiny_predictor(args.out_dir / "predictor")


if __name__ == "__main__":
    main()
