"""Small text helpers shared by the panels: numbers, sparklines, statuses."""

from __future__ import annotations

from collections.abc import Sequence

from engine import events as ev

BARS = "▁▂▃▄▅▆▇█"
STATUS_GLYPHS = {
    ev.PENDING: "·",
    ev.RUNNING: "▶",
    ev.DONE: "✓",
    ev.FAILED: "✗",
    ev.INTERRUPTED: "‖",
    ev.SKIPPED: "»",
}
STATUS_STYLES = {
    ev.PENDING: "dim",
    ev.RUNNING: "bold cyan",
    ev.DONE: "green",
    ev.FAILED: "red",
    ev.INTERRUPTED: "yellow",
    ev.SKIPPED: "dim italic",
}


def num(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def sample(values: Sequence[float], width: int) -> list[float]:
    """At most ``width`` points spread over the whole history (last point kept)."""
    n = len(values)
    if n <= width:
        return list(values)
    return [values[round(i * (n - 1) / (width - 1))] for i in range(width)] if width > 1 else [values[-1]]


def spark(values: Sequence[float], width: int, lo: float | None = None, hi: float | None = None) -> str:
    """One-line sparkline of ``values`` squeezed into ``width`` cells."""
    points = sample(values, width)
    if not points:
        return ""
    lo = min(points) if lo is None else lo
    hi = max(points) if hi is None else hi
    extent = hi - lo or 1.0
    top = len(BARS) - 1
    return "".join(BARS[max(0, min(top, round((v - lo) / extent * top)))] for v in points)


def spark_rows(values: Sequence[float], width: int, height: int, lo: float, hi: float) -> list[str]:
    """A ``height``-line bar chart of ``values`` on the fixed scale [lo, hi], top line first."""
    points = sample(values, width)
    extent = hi - lo or 1.0
    levels = height * 8
    rows = [[" "] * len(points) for _ in range(height)]
    for col, value in enumerate(points):
        filled = max(1, min(levels, round((value - lo) / extent * levels)))
        for row in range(height):
            part = filled - (height - 1 - row) * 8
            rows[row][col] = "█" if part >= 8 else (BARS[part - 1] if part > 0 else " ")
    return ["".join(r) for r in rows]


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def ellipsize(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def out_of_domain(check: ev.StoryChecked) -> str:
    """The warning for a story the models do not seem to know, with its figures (both faces say it so)."""
    return (
        f"only {check.exact} of its {check.sentences} sentences come back from encode -> decode"
        f" (mean cos {check.mean_sim:.3f}): the models may not know this text, and its scores may mean little"
    )
