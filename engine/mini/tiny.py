"""Random-init SONAR-architecture assets written as real fairseq2 cards.

Tests use them to exercise the card-loading path without the shipped mini
weights (and to prove that the real card names resolve through ``@user``
overlays). The sizes are a parameter, so the real ``basic`` shape can be built too.
Nothing here is trained: decodes are gibberish, shapes and code paths are real.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
