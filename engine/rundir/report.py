"""Results of one or more runs as a table, Markdown, CSV or JSON, per experiment or grouped.

One module for every place results are shown or exported: ``results.md`` and
``results.csv`` in the run directory, ``embopt-tui report``, the headless final
table and the dashboard's export key. Pure text: no rich, no torch. Which
columns a table shows and how it fits a terminal is :mod:`engine.rundir.columns`,
shared with the dashboard.

Several runs side by side get a leading ``Run`` column (``run`` in CSV).
CSV and JSON keep every field.
"""

from __future__ import annotations

import csv
import io
import json
import math
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.events import STATUSES
from engine.files import FileRefused, read_regular
from engine.results import FIELDS, RANKINGS, best_by_story, best_names
from engine.rundir.columns import Column, choose, fit, number, text, uses
from engine.text import printable

FORMATS = ("table", "markdown", "csv", "json")
GROUPINGS = ("experiment", "method", "objective")
RESULTS_FILE = "results.json"
RESULTS_BYTES = 1 << 30

# CSV holds every scalar field; the per-step trajectory stays in results.json.
CSV_FIELDS = tuple(f for f in FIELDS if f != "trajectory")
RANK_LABELS = {"text_sim": "Text Sim", "final_sim": "Final Sim"}


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
    def rank_by(self) -> str:
        """What "best" means in this run; runs from before ``rank_by`` ranked by the final similarity."""
        rank_by = self.data.get("rank_by")
        return rank_by if rank_by in RANKINGS else "final_sim"

    @property
    def best(self) -> frozenset[str]:
        """The best experiment of each story (older runs: of the whole run)."""
        if "best" in self.data:
            return best_names(self.data["best"])
        return frozenset(best_by_story(self.experiments, self.rank_by).values())


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


def render(runs: Sequence[Run], fmt: str, width: int | None = None, group: str | None = None) -> str:
    """``width``: the terminal's columns, which a plain table fits itself to (the other formats ignore it).
    ``group``: one row per experiment (its repeats together), method or objective, with mean ± std and n."""
    if group is not None:
        return format_groups(runs, group, fmt)
    if fmt == "table":
        return format_table(runs, width)
    if fmt == "markdown":
        return format_markdown(runs)
    if fmt == "csv":
        return format_csv(runs)
    if fmt == "json":
        return format_json(runs)
    raise ValueError(f"unknown format {fmt!r}; expected one of {', '.join(FORMATS)}")


# --- rows --------------------------------------------------------------------
def _rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """Every experiment of every run, the Run column's value added."""
    return [{**row, "run": run.label} for run in runs for row in run.experiments]


def _columns(runs: Sequence[Run]) -> list[Column]:
    return choose((row for run in runs for row in run.experiments), several_runs=len(runs) > 1)


def cells(columns: Sequence[Column], row: Mapping[str, Any]) -> dict[str, str]:
    """One experiment's cells by header (full text)."""
    return {c.header: c.show(row) for c in columns}


def status_counts(rows: Iterable[Mapping[str, Any]]) -> str:
    """``"5 done, 1 failed, 1 skipped"``: each status that occurs, in the order a queue moves through them."""
    statuses = [str(row.get("status")) for row in rows]
    order = list(STATUSES) + sorted(set(statuses) - set(STATUSES))
    return ", ".join(f"{statuses.count(s)} {s}" for s in order if s in statuses)


def _settings(row: Mapping[str, Any]) -> str:
    """The settings that tell what ran: the method (when not gradient) and those it uses of lr and steps."""
    parts = [] if row.get("method") in (None, "gradient") else [f"method={row.get('method')}"]
    parts += [f"{s}={text(row.get(s))}" for s in ("lr", "steps") if uses(row, s)]
    return ", ".join(parts)


def best_lines(run: Run, markdown: bool) -> list[str]:
    """One line per story's best experiment, saying what "best" ranked by (the story named when there are several)."""
    rows = [r for r in run.experiments if r.get("name") in run.best]
    stories = {r.get("story") for r in run.experiments}
    lead = "**Best**" if markdown else "Best"
    out = []
    for row in rows:
        name = row.get("name")
        shown = f"`{name}`" if markdown else name
        where = f" for story {row.get('story')}" if len(stories) > 1 else ""
        if run.rank_by == "text_sim":
            found = f'its best sentence scores {number(row.get("text_sim"))} in z\'s place: "{text(row.get("text"))}"'
        else:
            found = f"its z reached the highest final similarity, {number(row.get('final_sim'))}"
        out.append(f"{lead}{where}: {shown} ({_settings(row)}), ranked by {RANK_LABELS[run.rank_by]}: {found}")
    return out


# --- formats -------------------------------------------------------------------
def format_table(runs: Sequence[Run], width: int | None = None) -> str:
    """Plain aligned text; the best row of each story starts with ``*``.

    ``width`` (a terminal's columns): the table narrows to it by the one rule of
    :func:`engine.rundir.columns.fit`; without one (a log, a pipe) every text is whole.
    """
    rows = _rows(runs)
    columns = _columns(runs)
    table = [cells(columns, row) for row in rows]
    layout = fit(columns, table, width)
    widths = layout.widths(table)
    best = {(run.label, name) for run in runs for name in run.best}

    def line(mark: str, values: Sequence[str]) -> str:
        parts = [v.rjust(w) if c.right else v.ljust(w) for v, w, c in zip(values, widths, layout.columns)]
        return f"{mark} " + (" " * layout.gap).join(parts).rstrip()

    out = [line(" ", [c.header for c in layout.columns]), line(" ", ["-" * w for w in widths])]
    for row, row_cells in zip(rows, table):
        out.append(line("*" if (row["run"], row.get("name")) in best else " ", layout.cells(row_cells)))
    for run in runs:
        for best_line in best_lines(run, markdown=False):
            line = ("" if len(runs) == 1 else f"{run.label}: ") + best_line
            out += textwrap.wrap(line, width, subsequent_indent="  ") if width else [line]
    return "\n".join(out) + "\n"


def _md(value: str) -> str:
    return value.replace("|", "\\|")


def format_markdown(runs: Sequence[Run]) -> str:
    """The reference report's summary table, every text whole; the best row's name and scores in bold."""
    columns = _columns(runs)
    out = [
        "| " + " | ".join(c.header for c in columns) + " |",
        "|"
        + "|".join(("-" * (len(c.header) + 1) + ":") if c.right else "-" * (len(c.header) + 2) for c in columns)
        + "|",
    ]
    bold = {"Experiment", "Final Sim", "Improvement", "Text Sim"}
    for run in runs:
        for row in run.experiments:
            row_cells = cells(columns, {**row, "run": run.label})
            values = [_md(row_cells[c.header]) for c in columns]
            if row.get("name") in run.best:
                values = [f"**{v}**" if c.header in bold and v else v for v, c in zip(values, columns)]
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
            writer.writerow([_csv_value(run, row, f) for f in fields])
    return buf.getvalue()


def _csv_value(run: Run, row: Mapping[str, Any], field: str) -> Any:
    if field == "run":
        return run.label
    if field == "best":
        return 1 if row.get("name") in run.best else 0
    value = row.get(field)
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (list, tuple)):
        return " | ".join(str(int(v)) if isinstance(v, bool) else text(v) for v in value)
    if isinstance(value, dict):
        return text(value)
    if value is None:
        return ""
    return value if isinstance(value, (int, float)) else printable(str(value))


def format_json(runs: Sequence[Run]) -> str:
    """One run: its ``results.json`` object; several: a list of them, each with ``run_dir``."""
    if len(runs) == 1:
        return json.dumps(runs[0].data, indent=2, allow_nan=True) + "\n"
    return json.dumps([{"run_dir": r.path, **r.data} for r in runs], indent=2, allow_nan=True) + "\n"


# --- groups ----------------------------------------------------------------------
GROUP_METRICS = (("Text Sim", "text_sim"), ("Final Sim", "final_sim"), ("Oracle Gap", "oracle_gap"))


def group_key(row: Mapping[str, Any], by: str) -> str:
    """The group a row belongs to: its experiment (the name its repeats share), method or objective."""
    if by == "experiment":
        return str(row.get("repeat_of") or row.get("name"))
    return str(row.get(by))


def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (0 for one value); None for no values."""
    if not values:
        return None, None
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def groups(runs: Sequence[Run], by: str) -> list[dict[str, Any]]:
    """One record per (story, group) of the done experiments: n and the mean and std of each metric.

    The oracle gap is text_sim - oracle_sim: above 0, the sentence found beats the true one.
    """
    if by not in GROUPINGS:
        raise ValueError(f"unknown grouping {by!r}; expected one of {', '.join(GROUPINGS)}")
    found: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in _rows(runs):
        if row.get("status") == "done":
            found.setdefault((str(row.get("story")), group_key(row, by)), []).append(row)
    out = []
    for (story, key), rows in found.items():
        record: dict[str, Any] = {"story": story, by: key, "n": len(rows)}
        for _, field in GROUP_METRICS:
            values = [_metric(row, field) for row in rows]
            mean, std = mean_std([v for v in values if v is not None])
            record[f"{field}_mean"], record[f"{field}_std"] = mean, std
        out.append(record)
    return out


def _metric(row: Mapping[str, Any], field: str) -> float | None:
    if field == "oracle_gap":
        text_sim, oracle = row.get("text_sim"), row.get("oracle_sim")
        ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (text_sim, oracle))
        return float(text_sim) - float(oracle) if ok else None
    value = row.get(field)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def plus_minus(mean: float | None, std: float | None) -> str:
    return "-" if mean is None else f"{mean:.3f} ± {std:.3f}"


def format_groups(runs: Sequence[Run], by: str, fmt: str = "table") -> str:
    """:func:`groups` as a table, Markdown, CSV or JSON."""
    records = groups(runs, by)
    if fmt == "json":
        return json.dumps(records, indent=2, allow_nan=True) + "\n"
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        fields = list(records[0]) if records else ["story", by, "n"]
        writer.writerow(fields)
        writer.writerows([["" if r[f] is None else r[f] for f in fields] for r in records])
        return buf.getvalue()
    several = len({r["story"] for r in records}) > 1
    headers = (["Story"] if several else []) + [by.capitalize(), "n"] + [h for h, _ in GROUP_METRICS]
    table = [
        ([r["story"]] if several else [])
        + [r[by], str(r["n"])]
        + [plus_minus(r[f"{field}_mean"], r[f"{field}_std"]) for _, field in GROUP_METRICS]
        for r in records
    ]
    if fmt == "markdown":
        lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
        return "\n".join(lines + ["| " + " | ".join(_md(c) for c in row) + " |" for row in table]) + "\n"
    widths = [max([len(h)] + [len(row[i]) for row in table]) for i, h in enumerate(headers)]
    right = {"n", *(h for h, _ in GROUP_METRICS)}
    lines = []
    for row in [headers, ["-" * w for w in widths], *table]:
        parts = [c.rjust(w) if h in right else c.ljust(w) for c, w, h in zip(row, widths, headers)]
        lines.append("  " + "  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"
