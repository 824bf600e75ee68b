"""The columns of a results table, and how a table fits a width: one rule for headless, ``report`` and the dashboard.

A table shows the reference report's columns and the metrics, the settings
that tell its rows apart, each objective's own number when it is not plain
cosine, and the texts. When it is wider than the terminal, :func:`fit` gives up
the least important first (:data:`FIT`): the texts of z and of init, then the
secondary numbers and settings; the honest score (Text Sim, and Text clipped
but kept) and the Experiment column go last or never. A setting the row's
method does not use shows as :data:`UNUSED`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.methods import METHODS
from engine.text import printable

UNUSED = "—"  # a setting the row's method never reads
MISSING = "-"  # a number that was not measured (yet)
GAP = 2  # spaces between columns, before fitting squeezes them to one
MARK = 2  # the mark before each row ("* " on the best), or its place


def number(value: Any, signed: bool = False) -> str:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return MISSING
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def text(value: Any) -> str:
    """A field as one line of text: lists joined with `` | ``, tables as ``k=v``, whitespace folded."""
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " | ".join(text(v) for v in value)
    if isinstance(value, dict):
        return printable(",".join(f"{k}={v:g}" if _is_number(v) else f"{k}={v}" for k, v in value.items()))
    if isinstance(value, float):
        return f"{value:g}"
    return printable(" ".join(str(value).split()))  # one line (a newline breaks a row), nothing that drives a terminal


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def uses(row: Mapping[str, Any], setting: str) -> bool:
    """Whether the row's method reads ``setting`` (an unknown method: assume it does)."""
    method = METHODS.get(str(row.get("method") or "gradient"))
    return method is None or setting in method.uses


def steps(row: Mapping[str, Any]) -> str:
    """The steps asked for; ``ran/asked`` when the row ended early (an early stop, or stopped)."""
    done, asked = row.get("steps_done"), row.get("steps")
    if _is_number(done) and _is_number(asked) and row.get("status") != "pending" and 0 < done < asked:
        return f"{done}/{asked}"
    return text(asked)


def status(row: Mapping[str, Any]) -> str:
    return text(row.get("status")) + (f": {text(row.get('error'))}" if row.get("error") else "")


@dataclass(frozen=True)
class Column:
    header: str
    field: str  # the results.json field it shows and sorts by
    cell: Callable[[Mapping[str, Any]], str]
    right: bool = False
    setting: str | None = None  # blank (UNUSED) on rows whose method does not use this setting

    def show(self, row: Mapping[str, Any]) -> str:
        if self.setting is not None and not uses(row, self.setting):
            return UNUSED
        return self.cell(row)


def _field(name: str, how: Callable[[Any], str] = text) -> Callable[[Mapping[str, Any]], str]:
    return lambda row: how(row.get(name))


def _metric(name: str, signed: bool = False) -> Callable[[Mapping[str, Any]], str]:
    return lambda row: number(row.get(name), signed)


ALL: dict[str, Column] = {
    c.header: c
    for c in (
        Column("Run", "run", _field("run")),
        Column("Experiment", "name", _field("name")),
        Column("Init Text", "init_text", _field("init_text"), setting="init"),
        Column("LR", "lr", _field("lr"), True, "lr"),
        Column("Steps", "steps", steps, True, "steps"),
        Column("Init Sim", "init_sim", _metric("init_sim"), True, "init"),
        Column("Final Sim", "final_sim", _metric("final_sim"), True),
        Column("Improvement", "improvement", _metric("improvement", signed=True), True, "init"),
        Column("Init Loss", "init_loss", _metric("init_loss"), True, "init"),
        Column("Final Loss", "final_loss", _metric("final_loss"), True),
        Column("Best Loss", "best_loss", _metric("best_loss"), True),
        Column("Oracle", "oracle_sim", _metric("oracle_sim"), True),
        Column("Round-trip", "roundtrip_sim", _metric("roundtrip_sim"), True),
        Column("Text Sim", "text_sim", _metric("text_sim"), True),
        Column("Text NLL", "text_nll", _metric("text_nll"), True),
        Column("Oracle NLL", "oracle_nll", _metric("oracle_nll"), True),
        Column("Story", "story", _field("story")),
        Column("Method", "method", _field("method")),
        Column("Objective", "objective", _field("objective")),
        Column("Optimizer", "optimizer", _field("optimizer"), setting="optimizer"),
        Column("Norm", "norm", _field("norm"), setting="norm"),
        Column("Beam Size", "beam_size", _field("beam_size"), True, "beam_size"),
        Column("Decode Every", "decode_every", _field("decode_every"), True, "decode_every"),
        Column("Seed", "seed", _field("seed"), True, "seed"),
        Column("Status", "status", status),
        Column("Text", "text", _field("text")),
        Column("Decoded z", "decoded_z", _field("decoded_z")),
    )
}
SETTINGS = ("Story", "Method", "Objective", "Optimizer", "Norm", "Beam Size", "Decode Every", "Seed")
LOSSES = ("Init Loss", "Final Loss", "Best Loss")
# What a terminal table clips its free text to before it even needs to fit (a log or a pipe clips nothing).
CLIPS = {"Status": 32, "Init Text": 28, "Text": 48, "Decoded z": 40}
# How a table too wide for its terminal narrows, in turn: (column, clip width or 0 to leave it out); ("", 1) then
# squeezes the gap between columns to one space. Experiment, Run and Text Sim never go; Text is clipped, never left out.
FIT: tuple[tuple[str, int], ...] = (
    ("Decoded z", 16),
    ("Decoded z", 0),
    ("Init Text", 14),
    ("Init Text", 0),
    ("Round-trip", 0),
    ("Oracle NLL", 0),
    ("Improvement", 0),
    ("Init Loss", 0),
    ("Best Loss", 0),
    ("Init Sim", 0),
    ("Seed", 0),
    ("Decode Every", 0),
    ("Beam Size", 0),
    ("Norm", 0),
    ("Optimizer", 0),
    ("Status", 16),
    ("Text", 32),
    ("LR", 0),
    ("Steps", 0),
    ("Text", 24),
    ("Objective", 0),
    ("Final Loss", 0),
    ("Final Sim", 0),  # the continuous z's score: the honest score and its fluency stay longer
    ("Status", 0),
    ("Text", 16),
    ("Text NLL", 0),
    ("Oracle", 0),  # the true sentence's score: what Text Sim is read against, so it goes last but one
    ("", 1),
    ("Text", 12),
)


def _same(value: Any) -> str:
    """A comparable form of a field (lists and tables included)."""
    return json.dumps(value, sort_keys=True, default=str)


def choose(rows: Iterable[Mapping[str, Any]], *, several_runs: bool = False) -> list[Column]:
    """The columns that describe these rows.

    Always the reference's and the metrics, in their order; each objective's
    own number when some row's objective is not plain cosine; each setting of
    :data:`SETTINGS` whose value differs between the rows; Status when
    something did not end as done; the texts (Text, Decoded z) last.
    ``several_runs`` puts a Run column first.
    """
    rows = list(rows)
    headers = ["Run"] if several_runs else []
    headers += ["Experiment", "Init Text", "LR", "Steps", "Init Sim", "Final Sim", "Improvement"]
    if any(row.get("objective") not in (None, "cosine") for row in rows):
        headers += list(LOSSES)
    headers += ["Oracle", "Round-trip", "Text Sim"]
    if any(row.get("text_nll") is not None or row.get("oracle_nll") is not None for row in rows):
        headers += ["Text NLL", "Oracle NLL"]  # fluency: the found sentence's, and the true one's beside it
    headers += [h for h in SETTINGS if len({_same(row.get(ALL[h].field)) for row in rows}) > 1]
    if any(row.get("status") != "done" for row in rows):
        headers.append("Status")
    headers += ["Text", "Decoded z"]
    return [ALL[h] for h in headers]


def clip(value: str, width: int | None) -> str:
    if width is None or len(value) <= width:
        return value
    return value[: max(0, width - 1)] + "…"


@dataclass(frozen=True)
class Layout:
    """What a table of these rows shows at a width: its columns, each one's clip, the gap between them."""

    columns: list[Column]
    clips: dict[str, int]
    gap: int = GAP

    def cells(self, row_cells: Mapping[str, str]) -> list[str]:
        return [clip(row_cells[c.header], self.clips.get(c.header)) for c in self.columns]

    def widths(self, table: Sequence[Mapping[str, str]]) -> list[int]:
        return [
            max([len(c.header)] + [len(clip(r[c.header], self.clips.get(c.header))) for r in table])
            for c in self.columns
        ]

    def width(self, table: Sequence[Mapping[str, str]]) -> int:
        widths = self.widths(table)
        return MARK + sum(widths) + self.gap * max(0, len(widths) - 1)


def fit(columns: Sequence[Column], table: Sequence[Mapping[str, str]], width: int | None) -> Layout:
    """The layout of ``table`` (each row's cells by header) within ``width`` characters, narrowing by :data:`FIT`.

    ``width`` None (a log, a pipe): every column, nothing clipped. Past the last
    step of :data:`FIT` the table is as narrow as this rule makes it: the caller crops.
    """
    if width is None:
        return Layout(list(columns), {})
    layout = Layout(list(columns), dict(CLIPS))
    for header, keep in FIT:
        if layout.width(table) <= width:
            break
        if not header:
            layout = Layout(layout.columns, layout.clips, keep)
        elif keep:
            layout = Layout(
                layout.columns, {**layout.clips, header: min(keep, layout.clips.get(header, keep))}, layout.gap
            )
        else:
            layout = Layout([c for c in layout.columns if c.header != header], layout.clips, layout.gap)
    slack = width - layout.width(table)
    if slack > 0 and "Text" in layout.clips:  # room left over goes to the found sentence
        layout.clips["Text"] += slack
    return layout
