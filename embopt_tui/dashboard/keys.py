"""The dashboard's keys: one table makes the bindings, the help screen and the command palette.

``{config}`` in a text is replaced by the name of the watched config file.
"""

from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding


@dataclass(frozen=True)
class Key:
    key: str  # Textual key name(s); "" for a line of help about a panel's own keys
    action: str = ""  # the app action it runs ("" for help-only lines)
    label: str = ""  # footer label; "" keeps it out of the footer
    help: str | None = None  # help-screen text ("\n" continues on the next line); None: no line
    shown_as: str = ""  # the key as the help screen writes it (default: ``key``)
    footer_key: str | None = None  # the key as the footer writes it (default: Textual's)
    title: str | None = None  # command palette title; None: not in the palette
    about: str = ""  # command palette description
    priority: bool = False


KEYS: tuple[Key, ...] = (
    Key(
        "p",
        "toggle_pause",
        "Pause",
        "pause / resume the engine (between steps)",
        title="Pause / resume",
        about="Pause the engine between steps, or resume it",
    ),
    Key(
        "s",
        "skip",
        "Skip",
        "skip the queue's choice (S: the running batch)",
        shown_as="s S",
        title="Skip experiment",
        about="Skip the experiment selected in the queue (running or pending)",
    ),
    Key("S", "skip_batch", title="Skip batch", about="Skip every experiment of the running batch"),
    Key(
        "r",
        "reload",
        "Reload",
        "reload {config} now (also on save)",
        title="Reload {config}",
        about="Apply the config file to pending experiments now",
    ),
    Key(
        "e",
        "export",
        "Export",
        "export export.csv/.json/.md to the run dir",
        title="Export results",
        about="Write export.csv, .json and .md into the run directory",
    ),
    Key(
        "d",
        "show_run_dir",
        "Run dir",
        "show the run directory",
        title="Show run directory",
        about="Where this run's files are",
    ),
    Key(
        "question_mark",
        "help",
        "Help",
        "this help",
        shown_as="?",
        footer_key="?",
        title="Help",
        about="The dashboard's keys",
    ),
    Key(
        "q",
        "quit",
        "Quit",
        "quit: asks while running (y, q or ctrl+c: yes)\nonce more while it stops: exit at once",
        shown_as="q ctrl+c",
        title="Quit",
        about="Stop the queue (saved as interrupted) and quit",
    ),
    Key("ctrl+c", "quit", priority=True),
    Key(
        "1",
        "show_tab('live')",
        help="Live / Results / Plot tab",
        shown_as="1 2 3",
        title="Live tab",
        about="The experiment chosen in the queue",
    ),
    Key("2", "show_tab('results')", title="Results tab", about="The comparison table"),
    Key("3", "show_tab('plot')", title="Plot tab", about="Every similarity curve"),
    Key(
        "m",
        "toggle_plot",
        help="Plot: per step / honest score per scoring / fluent_swap's front",
        title="Next plot",
        about="Cycle the plot: similarity per step, honest score per scoring, the front (sim against NLL)",
    ),
    Key("", help="choose an experiment (Live shows it)", shown_as="↑ ↓"),
    Key("", help="Results: pick a column, sort (again: reverse)", shown_as="← → o"),
    Key("", help="Results: group rows by experiment / method / objective", shown_as="g"),
    Key("", help="Results: the row's whole record (Esc closes it)", shown_as="enter"),
    Key("", help="move focus: queue / tab content", shown_as="tab"),
)


def bindings(keys: tuple[Key, ...] = KEYS) -> list[Binding]:
    return [
        Binding(k.key, k.action, k.label or k.action, show=bool(k.label), key_display=k.footer_key, priority=k.priority)
        for k in keys
        if k.action
    ]


def help_lines(config: str, keys: tuple[Key, ...] = KEYS) -> list[tuple[str, str]]:
    """(key, text) lines of the help screen; continuation lines have no key."""
    out: list[tuple[str, str]] = []
    for k in keys:
        if k.help is None:
            continue
        first, *rest = k.help.format(config=config).split("\n")
        out.append((k.shown_as or k.key, first))
        out.extend(("", line) for line in rest)
    return out


def commands(config: str, keys: tuple[Key, ...] = KEYS) -> list[tuple[str, str, str]]:
    """(title, description, action) of the command palette's own commands."""
    return [(k.title.format(config=config), k.about, k.action) for k in keys if k.title is not None]
