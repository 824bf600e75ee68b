"""The mini tokenizer: a sentencepiece BPE model in the NLLB layout.

fairseq2's NLLB loader adds ``<pad>`` at index 0 and the language control symbols
on top of the model, so the model itself must be trained with
``unk=0, bos=1, eos=2`` and no pad piece.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

LANG = "eng_Latn"
VOCAB_SIZE = 600


def train_tokenizer(sentences: Sequence[str], path: Path, vocab_size: int = VOCAB_SIZE) -> Path:
    """Train on ``sentences`` and write ``path`` (deterministic: one thread, no sampling)."""
    import sentencepiece as spm

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        shuffle_input_sentence=False,
        minloglevel=2,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.getvalue())
    return path


def load_tokenizer(path: Path):
    """The fairseq2 NLLB tokenizer over ``path``, as the asset cards load it."""
    from fairseq2.models.nllb.tokenizer import NllbTokenizerConfig, load_nllb_tokenizer

    return load_nllb_tokenizer(path, NllbTokenizerConfig(langs=[LANG], default_lang=LANG))
