"""How engine events reach the Textual app without ever blocking the engine.

The engine thread calls :meth:`EventBridge.emit` for every event. It appends
to a deque (lock-free under the GIL). Steps and decodes, the fast stream, post
nothing: the app's redraw timer drains them with everything else, so hundreds
of steps a second cost the engine no cross-thread wake-ups at all. Other events
(a finished experiment, a pause, the end) post one :class:`EventsPending`
message when none is outstanding, so the screen reacts to them at once.
The app drains the deque in order. Nothing is dropped here (the state keeps
every step's similarity); the coalescing happens when drawing.

Events that come before the app is running (the engine starts while Textual
is still setting up the screen) wait in the deque until :meth:`open`.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from textual.message import Message

from engine.events import Decoded, Event, Step


class EventsPending(Message):
    """Engine events are waiting in the bridge; superseded copies are dropped."""

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, EventsPending)


@dataclass(frozen=True)
class EngineDone:
    """Sent last through the bridge: the engine thread returned (``code`` is the run's exit code)."""

    code: int
    error: str | None = None


Item = Event | EngineDone
STREAMED = (Step, Decoded)  # left for the redraw timer to pick up


class EventBridge:
    def __init__(self, post: Callable[[Message], object]) -> None:
        self._post = post
        self._events: deque[Item] = deque()
        self._wake_pending = True  # closed until open(): nothing is posted to an app that is not running

    def open(self) -> None:
        """UI thread, once the app runs: deliver what came early and everything after."""
        self._wake_pending = True
        self._post(EventsPending())

    def emit(self, item: Item) -> None:
        """Engine thread: queue the event; never waits."""
        self._events.append(item)
        if not self._wake_pending and not isinstance(item, STREAMED):
            self._wake_pending = True
            self._post(EventsPending())

    def drain(self) -> list[Item]:
        """UI thread: every queued event, oldest first."""
        # Clear the flag before popping so an event appended meanwhile posts a fresh wake-up.
        self._wake_pending = False
        out: list[Item] = []
        events = self._events
        while events:
            out.append(events.popleft())
        return out
