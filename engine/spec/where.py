"""Where a config error is, and how it is said: one line naming the file, the line and the key path.

``<file>:<line>: <key path>: <message>`` or ``<file>: <key path>: <message>``.
The line is found by a light scan of the text (:class:`LineFinder`), not a
TOML parse: it is a hint; the key path is the truth.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class SpecError(Exception):
    """A config problem: ``str(err)`` is the one line shown to users."""

    def __init__(self, path: str | Path, where: str, message: str, line: int | None = None):
        self.path = str(path)
        self.where = where  # key path such as "experiments[2] (lower_lr).lr", or "" for file-level errors
        self.message = " ".join(message.splitlines())  # one line, whatever the value quoted in it
        self.line = line
        location = self.path if line is None else f"{self.path}:{line}"
        super().__init__(f"{location}: {where + ': ' if where else ''}{self.message}")


@dataclass(frozen=True)
class At:
    """A key path as shown to users (``label``) and as the line finder looks it up (``parts``)."""

    label: str
    parts: tuple[str | int, ...] = ()

    def key(self, name: str) -> At:
        shown = key_label(name)
        return At(f"{self.label}.{shown}" if self.label else shown, self.parts + (name,))

    def item(self, index: int) -> At:
        return At(f"{self.label}[{index}]", self.parts)  # list items share their key's line


def key_label(name: str) -> str:
    return name if re.fullmatch(r"[A-Za-z0-9_-]+", name) else json.dumps(name)


_HEADER = re.compile(r"^\s*(\[\[?)\s*([^\[\]]+?)\s*\]\]?\s*(?:#.*)?$")


class LineFinder:
    """Finds the line of a key by a light scan of the text, not a TOML parse.

    Headers (``[backend]``, ``[stories.lily]``, the Nth ``[[experiments]]``)
    delimit sections; inside the section a key path points into, the first
    line starting with ``key =`` (or a dotted ``a.b =``) is the answer. When
    the key is not written there (a missing key, an inline table), the
    section's header line is. Header-like lines inside multi-line strings
    can fool it; the line is a hint, the key path is the truth.
    """

    def __init__(self, text: str):
        self.lines = text.splitlines()
        self.headers: dict[tuple[str | int, ...], int] = {}
        seen: dict[tuple[str | int, ...], int] = {}
        for index, line in enumerate(self.lines):
            match = _HEADER.match(line)
            if not match:
                continue
            parts: tuple[str | int, ...] = tuple(p.strip().strip("\"'") for p in match.group(2).split("."))
            if match.group(1) == "[[":
                count = seen.get(parts, 0)
                seen[parts] = count + 1
                parts = (*parts, count)
            self.headers.setdefault(parts, index)
        self.starts = sorted(self.headers.values())

    def line(self, parts: tuple[str | int, ...]) -> int | None:
        for cut in range(len(parts), -1, -1):
            head, rest = parts[:cut], parts[cut:]
            if head and head not in self.headers:
                continue
            begin = self.headers[head] + 1 if head else 0
            end = next((s for s in self.starts if s >= begin), len(self.lines))
            keys = []
            for part in rest:
                if isinstance(part, int):
                    break
                keys.append(part)
            for n in range(len(keys), 0, -1):
                found = self._find_key(keys[:n], begin, end)
                if found is not None:
                    return found
            if head:
                return self.headers[head] + 1
        return None

    def _find_key(self, keys: list[str], begin: int, end: int) -> int | None:
        quoted = [rf"(?:{re.escape(k)}|\"{re.escape(k)}\"|'{re.escape(k)}')" for k in keys]
        pattern = re.compile(r"\s*" + r"\s*\.\s*".join(quoted) + r"\s*=")
        for index in range(begin, end):
            if pattern.match(self.lines[index]):
                return index + 1
        return None


def describe(value: Any) -> str:
    """A value as TOML would write it, prefixed by its TOML type, kept short."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}"
    if isinstance(value, float):
        return f"float {value!r}"
    if isinstance(value, str):
        shown = json.dumps(value, ensure_ascii=False)
        return f"string {shown if len(shown) <= 40 else shown[:36] + '...' + chr(34)}"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return f"a date/time {value}"


def choices(options: tuple[str, ...]) -> str:
    return ", ".join(f'"{o}"' for o in options)


def suggest(key: str, allowed: tuple[str, ...] | list[str]) -> str | None:
    """The allowed key closest to a misspelt or foreign one, if any is close."""
    close = difflib.get_close_matches(key, allowed, n=1, cutoff=0.6)
    if close:
        return close[0]
    aliases = {alias: real for alias, real in ALIASES.items() if real in allowed}
    close = difflib.get_close_matches(key.lower(), list(aliases), n=1, cutoff=0.75)
    return aliases[close[0]] if close else None


# Names people reach for from other tools; used only to suggest the real key.
ALIASES = {
    "learning_rate": "lr",
    "step_size": "lr",
    "num_steps": "steps",
    "n_steps": "steps",
    "iterations": "steps",
    "iters": "steps",
    "max_steps": "steps",
    "optim": "optimizer",
    "loss": "objective",
    "init_text": "init",
    "initial": "init",
    "beam": "beam_size",
    "num_beams": "beam_size",
    "random_seed": "seed",
    "radius": "norm",
    "projection": "norm",
    "decode_interval": "decode_every",
    "target": "targets",
    "target_index": "targets",
    "optimize_index": "optimize",
    "sentence": "sentences",
    "text": "sentences",
    "prefix": "context",
    "predictor_path": "predictor",
    "model": "predictor",
    "experiment": "experiments",
    "story": "stories",
    "default": "defaults",
    "precision": "dtype",
    "backend_kind": "kind",
    "type": "kind",
    "algorithm": "method",
    "search": "method",
    "sentences_file": "bank",
    "corpus": "bank",
    "k": "top_k",
    "snap": "snap_every",
    "num_workers": "workers",
    "num_gpus": "gpus_per_worker",
    "retries": "max_attempts",
    "batch_size": "search_width",
    "width": "search_width",
    "project_nearest": "nearest",
}
