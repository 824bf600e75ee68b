"""Modal screens: the key list (`?`) and the quit confirmation."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close")]

    def __init__(self, keys: list[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = keys

    def compose(self) -> ComposeResult:
        text = Text()
        text.append("embopt-tui keys\n\n", style="bold")
        for key, description in self.keys:
            text.append(f"  {key:<12}", style="bold cyan")
            text.append(description + "\n")
        text.append("\nCtrl+P opens the command palette with the same commands.\n", style="dim")
        text.append("Saving experiments.toml updates pending experiments live.\n", style="dim")
        text.append("\nEsc closes this help.", style="dim")
        with Vertical(id="help-box"):
            yield Static(text)


class ConfirmQuit(ModalScreen[bool]):
    """Asked while the queue runs: quitting saves the current experiment as interrupted."""

    BINDINGS = [
        Binding("y,enter", "answer(True)", "Quit"),
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
                    " quit   ",
                    ("n", "bold cyan"),
                    " keep running",
                )
            )

    def action_answer(self, answer: bool) -> None:
        self.dismiss(answer)
