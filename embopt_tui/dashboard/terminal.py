"""The dashboard's terminal: refuse to start without one, and take its loss for a hangup.

Textual's Linux driver reads stdin in a thread that treats ``read() == 0`` as
"nothing this time" and selects again at once: on a terminal that went away
without a SIGHUP (a pty whose master closed, a process started under nohup) it
spins at 100 % CPU for ever. :class:`HangupDriver` watches stdin for the hangup
(``poll`` reports ``POLLHUP`` without reading anything the input thread wants)
and turns it into what the dashboard already does on SIGHUP: stop between
steps, save the running experiments as interrupted, exit 130.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
from typing import Any, TextIO

from textual.drivers.linux_driver import LinuxDriver

HANGUP_POLL_MS = 250
HANGUP_EVENTS = select.POLLHUP | select.POLLERR | select.POLLNVAL


def missing_terminal(*streams: tuple[str, TextIO | None]) -> str | None:
    """The first stream that is not a terminal, or None.

    By default stdin (the keys), stdout (a redirected one means the user wanted
    a log: that is ``--no-ui``) and stderr (where Textual draws).
    """
    streams = streams or (("stdin", sys.stdin), ("stdout", sys.stdout), ("stderr", sys.stderr))
    for name, stream in streams:
        try:
            if stream is None or not os.isatty(stream.fileno()):
                return name
        except (AttributeError, OSError, ValueError):  # closed, or not a real file
            return name
    return None


class HangupDriver(LinuxDriver):
    """Textual's Linux driver, plus: end of input on stdin is a hangup."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watching = threading.Event()
        self._hung_up = False

    def start_application_mode(self) -> None:
        super().start_application_mode()
        self._watching.set()
        threading.Thread(target=self._watch_for_hangup, name="embopt-hangup", daemon=True).start()

    def stop_application_mode(self) -> None:
        self._watching.clear()
        super().stop_application_mode()

    def run_input_thread(self) -> None:
        try:
            super().run_input_thread()
        except OSError:  # EIO: the terminal went away under the read
            self._hang_up()

    def _watch_for_hangup(self) -> None:
        poller = select.poll()
        poller.register(self.fileno, 0)  # no input events: only the hangup and error bits come back
        while self._watching.is_set():
            try:
                ready = poller.poll(HANGUP_POLL_MS)
            except OSError:
                ready = [(self.fileno, select.POLLERR)]
            if any(mask & HANGUP_EVENTS for _, mask in ready):
                self._hang_up()
                return

    def _hang_up(self) -> None:
        if self._hung_up or not self._watching.is_set():
            return
        self._hung_up = True
        self.exit_event.set()  # the input thread stops selecting on a file that only ever says EOF
        os.kill(os.getpid(), signal.SIGHUP)  # handled by the dashboard like a dropped SSH session
