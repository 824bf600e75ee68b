"""``python -m embopt_tui`` is the ``embopt-tui`` command."""

from embopt_tui.cli import entry

entry()
