"""Text fit to print on one line: the one-line error reports every face shows."""

from __future__ import annotations


def _lines(err: BaseException) -> list[str]:
    return [line.strip() for line in str(err).strip().splitlines() if line.strip()]


def error_line(err: BaseException) -> str:
    """The first line of an error's message (its type when it has none)."""
    lines = _lines(err)
    return lines[0] if lines else type(err).__name__


def one_line(err: BaseException) -> str:
    """``Type: first line of the message`` (the type alone when there is none): a failure in one line."""
    lines = _lines(err)
    return f"{type(err).__name__}: {lines[0]}" if lines else type(err).__name__
