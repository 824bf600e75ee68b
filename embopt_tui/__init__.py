"""embopt-tui: the faces (CLI, headless mode, Textual dashboard) over ``engine``."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("embopt-tui")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.1.0"
