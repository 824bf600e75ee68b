"""Where a sentence bank's sentences come from, without torch.

A bank is ``"corpus"`` (the embedded default's training sentences) or a path to a
UTF-8 text file with one sentence per line. This module validates a bank for
``--check`` (it must stay light: no torch, no numpy), streams its sentences
(stripped, blank lines and repeats dropped, first occurrence kept) and hashes
its content for the cache. Encoding and caching live in :mod:`engine.banks.bank`.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

BANK_CORPUS = "corpus"
# --check decodes this much of a bank file (and further only until it meets a sentence):
# whole for ordinary files, a prefix for huge ones, whose later lines are checked as they load.
CHECK_BYTES = 8 << 20
_BLOCK = 1 << 20
LINE_BYTES = 16 << 10  # one sentence: 4,096 characters of any script (an encoder reads 512 tokens of it at most)
NO_SENTENCES = "bank file {} has no sentences (every line is blank)"


class BankError(ValueError):
    """A bank that cannot be read: ``str(err)`` is one line naming the file (and line)."""


def resolve_bank_path(value: str, base_dir: str | Path) -> Path:
    """The bank file ``value`` names: ``~`` expanded, relative to ``base_dir`` (the config file's folder)."""
    return Path(base_dir) / Path(value).expanduser()


def bank_source_problem(value: str, base_dir: str | Path) -> str | None:
    """Why ``value`` is not a usable bank, in one line; None when it is.

    Fast and network-free: reads at most ``CHECK_BYTES`` of the file (more only
    while every line so far is blank).
    """
    if value == BANK_CORPUS:
        return None
    if not value.strip():
        return f'empty value: give "{BANK_CORPUS}" or the path of a text file, one sentence per line'
    path = resolve_bank_path(value, base_dir)
    problem = _file_problem(path)
    if problem:
        return problem
    try:
        found = False
        with open(path, "rb") as f:
            for _, sentence in _lines(f, path):
                found = found or bool(sentence)
                if found and f.tell() >= CHECK_BYTES:
                    break
    except BankError as err:
        return str(err)
    except OSError as err:
        return f"bank file {path} cannot be read: {err.strerror or err}"
    return None if found else NO_SENTENCES.format(path)


def _file_problem(path: Path) -> str | None:
    if not path.exists():
        return f"bank file {path} does not exist"
    if path.is_dir():
        return f"bank file {path} is a directory, not a file"
    if not path.is_file():
        return f"bank file {path} is not a regular file"
    if not os.access(path, os.R_OK):
        return f"bank file {path} cannot be read (permission denied)"
    return None


def _lines(f, path: Path) -> Iterator[tuple[int, str]]:
    """(line number, stripped text) of each line; splits on "\\n" only, so other separators stay inside a sentence.

    A line longer than :data:`LINE_BYTES` is refused as it is met (BankError), never read whole.
    """
    for number, raw in enumerate(iter(lambda: f.readline(LINE_BYTES + 2), b""), 1):
        if len(raw.rstrip(b"\r\n")) > LINE_BYTES:
            raise BankError(
                f"{path}:{number}: a line longer than {LINE_BYTES:,} bytes (a bank holds one sentence per line)"
            )
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise BankError(
                f"{path}:{number}: not UTF-8 (byte 0x{raw[err.start]:02x} at column {err.start + 1})"
            ) from None
        if number == 1:
            text = text.removeprefix("\ufeff")  # a byte-order mark is not part of the first sentence
        yield number, text.strip()


@functools.lru_cache(maxsize=1)
def corpus_sentences() -> tuple[str, ...]:
    """The embedded default's distinct training sentences: the corpus its models were trained on."""
    from engine.mini.corpus import DEFAULT_NUM_STORIES, DEFAULT_SEED, generate_corpus

    return tuple(generate_corpus(DEFAULT_SEED, DEFAULT_NUM_STORIES).train_sentences())


def _raw_sentences(value: str, base_dir: str | Path) -> Iterator[str]:
    if value == BANK_CORPUS:
        yield from corpus_sentences()
        return
    path = resolve_bank_path(value, base_dir)
    problem = _file_problem(path)
    if problem:
        raise BankError(problem)
    with open(path, "rb") as f:
        for _, sentence in _lines(f, path):
            yield sentence


def iter_bank_sentences(value: str, base_dir: str | Path) -> Iterator[str]:
    """The bank's sentences in file order: stripped, blanks and repeats dropped (first occurrence kept).

    Streams: holds one 16-byte digest per distinct sentence, never the sentences.
    Raises :class:`BankError` for an unreadable file or a line that is not UTF-8.
    """
    seen: set[bytes] = set()
    for sentence in _raw_sentences(value, base_dir):
        if not sentence:
            continue
        key = hashlib.blake2b(sentence.encode("utf-8"), digest_size=16).digest()
        if key not in seen:
            seen.add(key)
            yield sentence


def bank_digest(value: str, base_dir: str | Path) -> str:
    """SHA-256 of the bank's content (the file's bytes; for the corpus, its sentences as such a file)."""
    h = hashlib.sha256()
    if value == BANK_CORPUS:
        for sentence in corpus_sentences():
            h.update(sentence.encode("utf-8") + b"\n")
        return h.hexdigest()
    path = resolve_bank_path(value, base_dir)
    problem = _file_problem(path)
    if problem:
        raise BankError(problem)
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def bank_label(value: str, base_dir: str | Path) -> str:
    """What a bank was loaded from, for people: ``corpus`` or the file's absolute path."""
    return BANK_CORPUS if value == BANK_CORPUS else str(resolve_bank_path(value, base_dir).resolve())
