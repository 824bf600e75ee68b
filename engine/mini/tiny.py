"""Random-init SONAR-architecture assets: real fairseq2 cards, or models held in memory.

Tests use the cards to exercise the card-loading path without the shipped mini
weights (and to prove that the real card names resolve through ``@user``
overlays). :func:`random_space` builds the pair in memory at any size, the real
``basic`` shape (:data:`SONAR_BASIC`) included, around any tokenizer: one of the
real vocabulary's width (:func:`widen_tokenizer`), or a narrower one in front of
wider tables (:class:`FoldingTokenizer`). Nothing here is trained: decodes are
gibberish, shapes and code paths are real.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from engine.mini.models import Sizes, create_decoder, create_encoder, llama_config
from engine.mini.tokenizer import load_tokenizer, train_tokenizer
from engine.mini.train import DECODER_FILE, ENCODER_FILE, TOKENIZER_FILE, write_cards
from engine.models.predictor import PredictorConfig, SonarLLMPredictor, save_predictor

TINY = Sizes(
    model_dim=32,
    encoder_layers=1,
    decoder_layers=1,
    heads=2,
    ffn_dim=64,
    max_seq_len=64,
    predictor_hidden=32,
    predictor_layers=1,
    predictor_heads=2,
    predictor_ffn=64,
)
# SONAR's `basic` text encoder and decoder (the predictor fields are unused: SONAR-LLM shapes are llama configs).
SONAR_BASIC = Sizes(model_dim=1024, encoder_layers=24, decoder_layers=24, heads=16, ffn_dim=8192, max_seq_len=512)
SONAR_VOCAB = 256206  # ids of SONAR's tokenizer: 256,000 pieces, pad, 202 language tokens and 3 data tags
NLLB_EXTRA_IDS = 5  # what fairseq2's NLLB loader adds to a model's pieces with one language: pad, language, 3 tags
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


def write_tiny_space(
    out_dir: str | Path,
    *,
    encoder_name: str = "tiny_encoder",
    decoder_name: str = "tiny_decoder",
    sizes: Sizes = TINY,
    sentences: Sequence[str] = SAMPLE_TEXT,
    seed: int = 0,
) -> Path:
    """Tokenizer, random-init encoder/decoder checkpoints and their cards, as the mini training writes them."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    train_tokenizer(list(sentences) * 4, out / TOKENIZER_FILE, vocab_size=120)
    vocab_info = load_tokenizer(out / TOKENIZER_FILE).vocab_info
    torch.manual_seed(seed)
    torch.save(create_encoder(sizes, vocab_info).state_dict(), out / ENCODER_FILE)
    torch.save(create_decoder(sizes, vocab_info).state_dict(), out / DECODER_FILE)
    names = (encoder_name, decoder_name)
    return write_cards(out, sizes, vocab_info, names, header="# Random-init tiny cards.\n", card_file="tiny_cards.yaml")


def write_tiny_predictor(
    out_dir: str | Path, *, embed_dim: int = TINY.model_dim, sizes: Sizes = TINY, seed: int = 0, add_begin: bool = False
) -> Path:
    """A random-init predictor directory in the SONAR-LLM layout."""
    torch.manual_seed(seed)
    save_predictor(SonarLLMPredictor(PredictorConfig(llama_config(sizes), embed_dim, add_begin)), out_dir)
    return Path(out_dir)


def widen_tokenizer(base: Path, out: Path, size: int = SONAR_VOCAB) -> Path:
    """Sentencepiece model ``base`` grown to ``size`` ids (as fairseq2's NLLB loader counts them), written to ``out``.

    The added pieces are user-defined symbols of two private-use characters: no English text holds
    one, so the base's tokenisation is unchanged, and a text that does tokenises back to it, so every
    id up to ``size`` is one a search may use. A tokenizer of the real vocabulary's width for
    random-init models of the real shape.
    """
    from sentencepiece import sentencepiece_model_pb2

    model = sentencepiece_model_pb2.ModelProto()
    model.ParseFromString(Path(base).read_bytes())
    missing = size - NLLB_EXTRA_IDS - len(model.pieces)
    if missing < 0:
        raise ValueError(f"{base} already has more than {size} ids")
    first, span = 0xE000, 0x1900  # the Basic Multilingual Plane's private-use area
    user_defined = sentencepiece_model_pb2.ModelProto.SentencePiece.USER_DEFINED
    for n in range(missing):
        piece = model.pieces.add()
        piece.piece = chr(first + n // span) + chr(first + n % span)
        piece.type = user_defined
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(model.SerializeToString())
    return out


class FoldingTokenizer:
    """A tokenizer in front of embedding tables wider than it: decoding folds ids it lacks back into its own.

    A random-init decoder emits any id of its table; this stands in for a tokenizer that
    could show them. Everything else is the wrapped tokenizer's.
    """

    def __init__(self, inner: Any):
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def create_decoder(self, *args: Any, **kwargs: Any) -> Any:
        decode = self._inner.create_decoder(*args, **kwargs)
        size = self._inner.vocab_info.size
        return lambda ids: decode(ids % size)


def random_space(
    tokenizer: Any,
    sizes: Sizes = TINY,
    *,
    table_rows: int | None = None,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    seed: int = 0,
) -> Any:
    """An :class:`engine.models.space.EmbeddingSpace` of random-init models built in place on ``device``.

    ``table_rows``: the rows of both embedding tables (default: the tokenizer's ids).
    """
    from fairseq2.data.tokenizers import VocabularyInfo
    from sonar.inference_pipelines.text import EmbeddingToTextModelPipeline, TextToEmbeddingModelPipeline

    from engine.models.space import EmbeddingSpace

    info = tokenizer.vocab_info
    rows = table_rows or info.size
    vocab = VocabularyInfo(rows, info.unk_idx, info.bos_idx, info.eos_idx, info.pad_idx)
    device = torch.device(device)
    torch.manual_seed(seed)
    encoder = create_encoder(sizes, vocab, device=device, dtype=dtype).eval()
    decoder = create_decoder(sizes, vocab, device=device, dtype=dtype).eval()
    return EmbeddingSpace(
        TextToEmbeddingModelPipeline(encoder=encoder, tokenizer=tokenizer, device=device, dtype=dtype),
        EmbeddingToTextModelPipeline(decoder=decoder, tokenizer=tokenizer, device=device, dtype=dtype),
        tokenizer,
        device,
        dtype,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m engine.mini.tiny OUT_DIR``: write tiny cards + predictor in a fresh process.

    fairseq2 reads the card directories once, when its asset store is first
    built, so cards must exist before a process that loads them starts.
    """
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument(
        "--names",
        nargs=2,
        default=("tiny_encoder", "tiny_decoder"),
        metavar=("ENCODER", "DECODER"),
        help="card names, e.g. text_sonar_basic_encoder@user text_sonar_basic_decoder@user for an overlay",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    write_tiny_space(args.out_dir, encoder_name=args.names[0], decoder_name=args.names[1])
    write_tiny_predictor(args.out_dir / "predictor")


if __name__ == "__main__":
    main()
