"""The encoder's input vocabulary as a token search sees it: which ids a candidate sentence may use.

Token swap's one-hot inputs are as wide as the encoder's embedding table, and a table may be wider than
its tokenizer (padded to a round size, or real-size models behind a smaller stand-in tokenizer): ids the
tokenizer cannot produce are never candidates. A tokenizer wider than the table cannot work, since some
of its ids have no embedding: :class:`VocabularyError`.

A candidate id is an ordinary text piece: not pad, unk, bos or eos, not a language token, and something
to show. Deciding that by decoding each id costs ~5 us an id (1.3 s for SONAR's 256,206); a
sentencepiece tokenizer's piece table says it for all but the special-looking pieces at ~0.4 us an id,
and those few are decoded (:func:`piece_texts`).
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import Tensor

_LANG_TOKEN = re.compile(r"^__\w+__$")
# Pieces whose text only the decoder knows: control and user symbols (<s>, <MINED_DATA>), bytes (<0x41>),
# language tokens (__eng_Latn__). Every other sentencepiece piece decodes to itself with "▁" as a space.
_SPECIAL_LOOKING = re.compile(r"^(<.*>|__\w+__)$")
_SPACE = "\u2581"


class VocabularyError(ValueError):
    """A tokenizer and an embedding table that cannot work together; ``str(err)`` is one line."""


def piece_texts(tokenizer: Any) -> list[str]:
    """The text each id of ``tokenizer`` decodes to on its own (up to surrounding spaces), for every id."""
    size = int(tokenizer.vocab_info.size)
    decode = tokenizer.create_decoder()
    ids = torch.arange(size)
    model = getattr(tokenizer, "_model", None)  # fairseq2's sentencepiece tokenizers keep their piece table here
    if model is None or not hasattr(model, "index_to_token") or int(model.vocabulary_size) != size:
        return [str(decode(ids[i : i + 1])) for i in range(size)]
    texts = []
    for i in range(size):
        piece = model.index_to_token(i)
        texts.append(str(decode(ids[i : i + 1])) if _SPECIAL_LOOKING.match(piece) else piece.replace(_SPACE, " "))
    return texts


def check_width(tokenizer: Any, width: int) -> None:
    """Raise :class:`VocabularyError` unless every id of ``tokenizer`` has a row in a table ``width`` rows wide."""
    size = int(tokenizer.vocab_info.size)
    if size > width:
        raise VocabularyError(
            f"the tokenizer has {size:,} ids but the encoder's embedding table only {width:,} rows:"
            " they do not belong together (check the backend's tokenizer card)"
        )


def candidate_mask(tokenizer: Any, width: int) -> Tensor:
    """[width] bool: the ids of an embedding table ``width`` rows wide that a candidate sentence may use."""
    check_width(tokenizer, width)
    info = tokenizer.vocab_info
    special = {info.pad_idx, info.unk_idx, info.bos_idx, info.eos_idx}
    mask = torch.zeros(width, dtype=torch.bool)
    allowed = [
        i
        for i, text in enumerate(piece_texts(tokenizer))
        if i not in special and (shown := text.strip()) and not _LANG_TOKEN.match(shown)
    ]
    mask[allowed] = True
    return mask
