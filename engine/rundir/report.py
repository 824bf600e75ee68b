"""Results of one or more runs as a table, Markdown, CSV or JSON.

One module for every place results are shown or exported: ``results.md`` and
``results.csv`` in the run directory, ``embopt-tui report``, the headless final
table and the dashboard's export key. Pure text: no rich, no torch.

Several runs side by side get a leading ``Run`` column (``run`` in CSV).
:func:`columns` chooses the table columns (the reference's always, settings
only where rows differ); CSV and JSON keep every field.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.events import STATUSES
from engine.files import FileRefused, read_regular
from engine.results import FIELDS, best_by_story, best_names
from engine.text import printable

FORMATS = ("table", "markdown", "csv", "json")
RESULTS_FILE = "results.json"
RESULTS_BYTES = 1 << 30

# CSV holds every scalar field; the per-step trajectory stays in results.json.
CSV_FIELDS = tuple(f for f in FIELDS if f != "trajectory")
# The reference report's columns, then the metrics this tool adds: always shown, in this order.
REFERENCE_COLUMNS = ("Experiment", "Init Text", "LR", "Steps", "Init Sim", "Final Sim", "Improvement")
METRIC_COLUMNS = ("Oracle", "Round-trip", "Text Sim", "Text", "Decoded z")
COLUMNS = REFERENCE_COLUMNS + METRIC_COLUMNS
# Settings shown only where they tell rows apart (header -> results.json field), as experiment trackers do.
SETTING_COLUMNS = {
    "Story": "story",
    "Method": "method",
    "Objective": "objective",
    "Optimizer": "optimizer",
    "Norm": "norm",
    "Beam Size": "beam_size",
    "Decode Every": "decode_every",
    "Seed": "seed",
}
RIGHT = {
    "LR",
    "Steps",
    "Init Sim",
    "Final Sim",
    "Improvement",
    "Oracle",
    "Round-trip",
    "Text Sim",
    "Beam Size",
    "Decode Every",
    "Seed",
}
_TABLE_WIDTHS = {"Status": 32, "Init Text": 28, "Text": 36, "Decoded z": 40}  # plain table truncates long text here
# A narrow terminal gives up free text first, so the numbers stay: (column, clip width or 0 to drop it) in turn,
# then the gap between columns shrinks to one space.
_NARROWING = (
    ("Text", 16),
    ("Decoded z", 16),
    ("Decoded z", 0),
    ("Init Text", 14),
    ("Init Text", 0),
    ("Text", 0),
    ("", 1),
)


class ReportError(Exception):
    """A run directory that holds no readable results: ``str(err)`` is one line."""


@dataclass(frozen=True)
class Run:
    """One run's ``results.json`` plus where it came from."""

    path: str  # the run directory as given
    data: Mapping[str, Any]

    @property
    def label(self) -> str:
        return printable(Path(self.path).name or self.path)

    @property
    def experiments(self) -> list[dict[str, Any]]:
        return list(self.data.get("experiments", []))

    @property
    def best(self) -> frozenset[str]:
        """The best experiment of each story (older runs: of the whole run)."""
        if "best" in self.data:
            return best_names(self.data["best"])
        return frozenset(best_by_story(self.experiments).values())


def load_run(run_dir: str | Path) -> Run:
    path = Path(run_dir) / RESULTS_FILE
    if not Path(run_dir).is_dir():
        raise ReportError(f"{run_dir}: no such run directory")
    try:
        data = json.loads(read_regular(path, RESULTS_BYTES).decode("utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{path}: no such file (not a run directory?)") from None
    except (FileRefused, UnicodeDecodeError, RecursionError) as err:  # a FIFO would block `report` for ever
        raise ReportError(f"{path}: cannot read: {err}") from None
    except json.JSONDecodeError as err:
        raise ReportError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
    except OSError as err:
        raise ReportError(f"{path}: cannot read: {err.strerror}") from None
    if not isinstance(data, dict) or not isinstance(data.get("experiments"), list):
        raise ReportError(f"{path}: not a results file (no 'experiments' list)")
    return Run(str(run_dir), data)


def render(runs: Sequence[Run], fmt: str, width: int | None = None) -> str:
    """``width``: the terminal's columns, which the plain table fits itself to (the other formats ignore it)."""
    if fmt == "table":
        return format_table(runs, width)
    if fmt == "markdown":
        return format_markdown(runs)
    if fmt == "csv":
        return format_csv(runs)
    if fmt == "json":
        return format_json(runs)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


# --- cells ------------------------------------------------------------------
def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _num(value: Any, signed: bool = False) -> str:
    if not _is_number(value):
        return "-"
    if math.isnan(value) or math.isinf(value):
        return str(value)
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (list, tuple)):
        return " | ".join(_text(v) for v in value)
    if isinstance(value, (dict,)):
        return printable(",".join(f"{k}={v:g}" if _is_number(v) else f"{k}={v}" for k, v in value.items()))
    if isinstance(value, float):
        return f"{value:g}"
    return printable(" ".join(str(value).split()))  # one line, and nothing that drives a terminal


def columns(rows: Iterable[Mapping[str, Any]], *, several_runs: bool = False) -> list[str]:
    """The columns that describe these rows (one run's, or several runs' together).

    Always the reference's and the metrics, in their order; then each setting
    of :data:`SETTING_COLUMNS` whose value differs between the rows; then
    Status when something did not end as done (all-done tables match the
    reference); the texts (Text, Decoded z) last. ``several_runs`` puts a Run
    column first.
    """
    rows = list(rows)
    cols = ["Run"] if several_runs else []
    cols += [*REFERENCE_COLUMNS, "Oracle", "Round-trip", "Text Sim"]
    cols += [h for h, f in SETTING_COLUMNS.items() if len({_same(row.get(f)) for row in rows}) > 1]
    if any(row.get("status") != "done" for row in rows):
        cols.append("Status")
    cols += ["Text", "Decoded z"]
    return cols


def _same(value: Any) -> str:
    """A comparable form of a field (lists and tables included)."""
    return json.dumps(value, sort_keys=True, default=str)


def headers(runs: Sequence[Run]) -> list[str]:
    return columns((row for run in runs for row in run.experiments), several_runs=len(runs) > 1)


def cells(run: Run, row: Mapping[str, Any], columns: Sequence[str]) -> list[str]:
    """One experiment as display strings, in ``columns`` order."""
    values = {
        "Run": run.label,
        "Experiment": _text(row.get("name")),
        "Status": _text(row.get("status")) + (f": {_text(row.get('error'))}" if row.get("error") else ""),
        "Init Text": _text(row.get("init_text")),
        "LR": _text(row.get("lr")),
        "Steps": _text(row.get("steps")),
        "Init Sim": _num(row.get("init_sim")),
        "Final Sim": _num(row.get("final_sim")),
        "Improvement": _num(row.get("improvement"), signed=True),
        "Oracle": _num(row.get("oracle_sim")),
        "Round-trip": _num(row.get("roundtrip_sim")),
        "Text Sim": _num(row.get("text_sim")),
        "Text": _text(row.get("text")),
        "Decoded z": _text(row.get("decoded_z")),
    }
    values.update({header: _text(row.get(field)) for header, field in SETTING_COLUMNS.items()})
    return [values[c] for c in columns]


def table_cells(
    run: Run, row: Mapping[str, Any], columns: Sequence[str], widths: Mapping[str, int] = _TABLE_WIDTHS
) -> list[str]:
    """:func:`cells` with long text clipped, for terminal tables."""
    return [_clip(c, widths.get(col)) for c, col in zip(cells(run, row, columns), columns)]


def status_counts(rows: Iterable[Mapping[str, Any]]) -> str:
    """``"5 done, 1 failed, 1 skipped"``: each status that occurs, in the order a queue moves through them."""
    statuses = [str(row.get("status")) for row in rows]
    order = list(STATUSES) + sorted(set(statuses) - set(STATUSES))
    return ", ".join(f"{statuses.count(s)} {s}" for s in order if s in statuses)


def best_lines(run: Run, markdown: bool) -> list[str]:
    """One line per story's best experiment (the story named when the run has several)."""
    rows = [r for r in run.experiments if r.get("name") in run.best]
    stories = {r.get("story") for r in run.experiments}
    lead = "**Best**" if markdown else "Best"
    out = []
    for row in rows:
        name = row.get("name")
        shown = f"`{_text(name)}`" if markdown else _text(name)
        where = f" for story {_text(row.get('story'))}" if len(stories) > 1 else ""
        out.append(
            f"{lead}{where}: {shown} (lr={_text(row.get('lr'))}, steps={_text(row.get('steps'))}) "
            f"achieved highest final similarity of {_num(row.get('final_sim'))}."
        )
    return out


# --- formats ----------------------------------------------------------------
def format_table(runs: Sequence[Run], width: int | None = None) -> str:
    """Plain aligned text; the best row of each run starts with ``*``.

    ``width`` (a terminal's columns): narrow Decoded z, then Init Text, then
    leave them out until the table fits, so the similarities stay in view.
    """
    columns, clip, gap = headers(runs), dict(_TABLE_WIDTHS), 2
    out = _table_lines(runs, columns, clip, gap)
    for column, keep in _NARROWING:
        if width is None or max(map(len, out)) <= width:
            break
        if not column:
            gap = keep
        elif keep:
            clip[column] = keep
        elif column in columns:
            columns = [c for c in columns if c != column]
        out = _table_lines(runs, columns, clip, gap)
    for run in runs:
        for best in best_lines(run, markdown=False):
            out.append(("" if len(runs) == 1 else f"{run.label}: ") + best)
    return "\n".join(out) + "\n"


def _table_lines(runs: Sequence[Run], columns: Sequence[str], clip: Mapping[str, int], gap: int) -> list[str]:
    body: list[list[str]] = []
    marks: list[str] = []
    for run in runs:
        for row in run.experiments:
            body.append(table_cells(run, row, columns, clip))
            marks.append("*" if row.get("name") in run.best else " ")
    widths = [max([len(col)] + [len(r[i]) for r in body]) for i, col in enumerate(columns)]

    def line(mark: str, values: Sequence[str]) -> str:
        parts = [v.rjust(w) if col in RIGHT else v.ljust(w) for v, w, col in zip(values, widths, columns)]
        return f"{mark} " + (" " * gap).join(parts).rstrip()

    out = [line(" ", columns), line(" ", ["-" * w for w in widths])]
    return out + [line(m, r) for m, r in zip(marks, body)]


def _clip(text: str, width: int | None) -> str:
    if width is None or len(text) <= width:
        return text
    return text[: width - 1] + "…"


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def format_markdown(runs: Sequence[Run]) -> str:
    """The reference report's summary table: best row's name, final sim and improvement in bold."""
    columns = headers(runs)
    out = [
        "| " + " | ".join(columns) + " |",
        "|" + "|".join(("-" * (len(c) + 1) + ":") if c in RIGHT else "-" * (len(c) + 2) for c in columns) + "|",
    ]
    bold = {"Experiment", "Final Sim", "Improvement"}
    for run in runs:
        for row in run.experiments:
            values = [_md(c) for c in cells(run, row, columns)]
            if row.get("name") in run.best:
                values = [f"**{v}**" if col in bold and v else v for v, col in zip(values, columns)]
            out.append("| " + " | ".join(values) + " |")
    out.append("")
    for run in runs:
        for best in best_lines(run, markdown=True):
            out.append(best if len(runs) == 1 else best.replace("**Best**", f"**Best** ({_md(run.label)})", 1))
    return "\n".join(out).rstrip("\n") + "\n"


def format_csv(runs: Sequence[Run]) -> str:
    """Every scalar field; lists joined with `` | ``; ``best`` is 1 on each run's best row."""
    fields = (("run",) if len(runs) > 1 else ()) + CSV_FIELDS
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    for run in runs:
        for row in run.experiments:
            record = []
            for f in fields:
                if f == "run":
                    record.append(run.label)
                elif f == "best":
                    record.append(1 if row.get("name") in run.best else 0)
                else:
                    value = row.get(f)
                    if isinstance(value, bool):
                        record.append(int(value))
                    elif isinstance(value, (list, tuple)):
                        record.append(" | ".join(str(int(v)) if isinstance(v, bool) else _text(v) for v in value))
                    elif isinstance(value, dict):
                        record.append(_text(value))
                    elif value is None:
                        record.append("")
                    else:
                        record.append(value if _is_number(value) else printable(value))
            writer.writerow(record)
    return buf.getvalue()


def format_json(runs: Sequence[Run]) -> str:
    """One run: its ``results.json`` object; several: a list of them, each with ``run_dir``."""
    if len(runs) == 1:
        return json.dumps(runs[0].data, indent=2, allow_nan=True) + "\n"
    return json.dumps([{"run_dir": r.path, **r.data} for r in runs], indent=2, allow_nan=True) + "\n"
