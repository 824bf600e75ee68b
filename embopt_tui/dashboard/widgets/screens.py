"""Modal screens: the key list (`?`), the quit confirmation and a Results row's details (Enter)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from embopt_tui.dashboard.widgets.front import front_table
from engine.rundir.columns import number, uses


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, keys: list[tuple[str, str]], config: Path | None = None) -> None:
        super().__init__()
        self.keys = keys
        self.config = config  # the watched file; None when resuming a run

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("embopt-tui keys\n\n", style="bold")
        for key, description in self.keys:
            text.append(f"  {key:<12}", style="bold cyan")
            text.append(description + "\n")
        text.append("\nCtrl+P: the same commands by name. Esc closes this help.\n", style="dim")
        if self.config is not None:
            text.append(f"Saving {self.config.name} updates pending experiments live.", style="dim")
        else:
            text.append("Resumed run: the queue comes from its run directory.", style="dim")
        with Vertical(id="help-box"):
            yield Static(text)


class ConfirmQuit(ModalScreen[bool]):
    """Asked while the queue runs: quitting saves the current experiment as interrupted.

    The quit keys asked again answer yes: q here, ctrl+c in the app (its binding comes first everywhere).
    """

    BINDINGS = [
        Binding("y,enter,q", "answer(True)", "Quit"),
        Binding("n,escape", "answer(False)", "Keep running"),
    ]

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box"):
            yield Static(
                Text.assemble(
                    ("Stop the queue and quit?\n\n", "bold"),
                    "The running experiment is saved as interrupted;\n",
                    "--resume RUN_DIR continues it later.\n\n",
                    ("y", "bold cyan"),
                    " / ",
                    ("q", "bold cyan"),
                    " quit   ",
                    ("n", "bold cyan"),
                    " keep running",
                )
            )

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)


def details_text(row: dict[str, Any]) -> Text:
    """One experiment's whole record: what it ran with, what it found (full texts), its candidates with scores."""
    out = Text()
    out.append(f"{row.get('name')}", style="bold")
    out.append(f"  {row.get('status')}\n", style="dim")
    if row.get("error"):
        out.append(f"error: {row['error']}\n", style="red")
    ran = [f"method {row.get('method')}", f"objective {row.get('objective')}"]
    ran += [f"{k} {row.get(k)}" for k in ("lr", "steps", "norm", "seed") if uses(row, k) and row.get(k) is not None]
    out.append(" · ".join(ran) + "\n", style="dim")
    if uses(row, "init"):
        out.append("started from: ", style="bold")
        out.append(f"{row.get('init_text')}\n")
    scores = [("text", "text_sim"), ("final", "final_sim"), ("oracle", "oracle_sim"), ("round-trip", "roundtrip_sim")]
    scores += [("text nll", "text_nll"), ("oracle nll", "oracle_nll")]
    if row.get("objective") not in (None, "cosine"):  # cosine's own number is -sim: said already
        scores += [("init loss", "init_loss"), ("final loss", "final_loss"), ("best loss", "best_loss")]
    out.append("  ".join(f"{label} {number(row.get(f))}" for label, f in scores if row.get(f) is not None) + "\n")
    steps = row.get("steps_done")
    out.append(f"steps {steps}/{row.get('steps')} · {row.get('scored') or 0} exact scorings\n\n", style="dim")
    out.append("best sentence: ", style="bold")
    out.append(f"{row.get('text') or '—'}\n", style="bold magenta")
    if row.get("decoded_z"):
        out.append("z decodes to: ", style="bold")
        out.append(f"{row['decoded_z']}\n")
    for prediction, target, exact in zip(
        row.get("decoded_predictions") or [], row.get("targets") or [], row.get("exact_match") or []
    ):
        out.append("✓ " if exact else "· ", style="bold green" if exact else "dim")
        out.append(f"{prediction}\n  target {target}\n", style="green" if exact else "")
    return out


def candidates_text(row: dict[str, Any]) -> Text:
    out = Text()
    top = row.get("top") or []
    if top:
        out.append("candidates, best first (sim, loss, text):\n", style="bold")
        for entry in top:
            out.append(f"  {number(entry.get('sim'))}  {number(entry.get('loss'))}  ", style="cyan")
            out.append(f"{entry.get('text')}\n")
    return out


class DetailsScreen(ModalScreen[None]):
    """Enter on a Results row: the experiment's whole record, scrollable; Esc closes it."""

    BINDINGS = [Binding("escape,q,enter", "dismiss", "Close")]

    def __init__(self, row: dict[str, Any]) -> None:
        super().__init__()
        self.row = row

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="details-box"):
            yield Static(details_text(self.row))
            front = front_table(self.row)
            if front is not None:
                yield Static(front, classes="front")
            yield Static(candidates_text(self.row))
