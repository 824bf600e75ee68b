"""One process per run directory: an advisory lock held while a process runs it.

``<run>/.lock`` is locked with ``flock`` for as long as the run's
:class:`engine.rundir.store.RunStore` is open, and holds the holder's pid. The
kernel drops the lock when the process ends, however it ends (kill -9
included), so a crash leaves nothing stale to clean up; a second ``--resume``
or dashboard on the directory meanwhile is refused, naming the pid. Readers
(``report``) take no lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

LOCK_FILE = ".lock"


class RunLocked(Exception):
    """Another process runs this directory: ``str(err)`` is one line naming its pid."""


class RunLock:
    """The held lock of one run directory; :meth:`release` (or the process's end) lets it go."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise RunLocked(f"{run_dir}: in use by {who} (one process runs a run directory at a time)") from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)  # closing the only descriptor drops the flock
            self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii").strip()
        return int(text) if text.isdigit() else None
    except (OSError, UnicodeDecodeError, ValueError):
        return None
