"""The exit codes of ``embopt-tui``, for the command line and the dashboard alike."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # every experiment done (or skipped: deliberate, not a failure)
    FAILED = 1  # some experiment failed (the others finished), or the models did not load
    USAGE = 2  # bad arguments, config or run directory
    INTERRUPTED = 130  # stopped by a signal or by the user; --resume continues it


def of_status(status: str) -> ExitCode:
    """The exit code of a run that ended with ``status`` (done, failed, interrupted)."""
    return {"done": ExitCode.OK, "interrupted": ExitCode.INTERRUPTED}.get(status, ExitCode.FAILED)
