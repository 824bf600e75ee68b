"""Modal screens: the key list (`?`) and the quit confirmation."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


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
