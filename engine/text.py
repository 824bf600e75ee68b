"""Text fit to print: control characters made visible, and the one-line error reports every face shows.

Stories, init texts, decoded sentences, experiment names and file names come
from people and models; printed raw, an ESC or CSI sequence in one of them
would drive the reader's terminal (clear it, retitle it, hide what follows).
:func:`printable` is the one function every face applies where text leaves the
program: C0 controls (tab and newline kept only where the caller allows them),
DEL, C1 controls (U+0080-U+009F, CSI U+009B among them) and the Unicode line
and paragraph separators are written as visible escapes (``\\x1b``, ``\\x9b``,
``\\u2028``), so the text reads the same and the terminal receives no command.
"""

from __future__ import annotations

import functools
import re
from typing import Any

_CONTROLS = [chr(c) for c in [*range(0x20), *range(0x7F, 0xA0)]] + ["\u2028", "\u2029"]


@functools.cache
def _unsafe(keep: str) -> re.Pattern[str]:
    return re.compile("[" + "".join(re.escape(c) for c in _CONTROLS if c not in keep) + "]")


_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    code = ord(char)
    return _NAMED.get(char) or (f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")


def printable(text: Any, *, newlines: bool = False, tabs: bool = False) -> str:
    """``text`` (made a string) with every control character written as a visible escape.

    ``newlines``: keep ``\\n`` (multi-line output such as a table or a toast);
    ``tabs``: keep ``\\t``. Everything else below U+0020, DEL, U+0080-U+009F,
    U+2028 and U+2029 become ``\\n``, ``\\t``, ``\\r``, ``\\xNN`` or ``\\uNNNN``. Idempotent: the escapes are
    plain characters.
    """
    return _unsafe("\n" * newlines + "\t" * tabs).sub(_escape, str(text))


def printable_data(value: Any) -> Any:
    """``value`` with :func:`printable` applied to every string inside it (lists, tuples, dict keys and values)."""
    if isinstance(value, str):
        return printable(value)
    if isinstance(value, list):
        return [printable_data(v) for v in value]
    if isinstance(value, tuple):
        return tuple(printable_data(v) for v in value)
    if isinstance(value, dict):
        return {printable_data(k): printable_data(v) for k, v in value.items()}
    return value


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
