"""Steering a running queue: stop, pause, skip and live reload, asked from any thread, read between steps.

A face (a signal handler, the dashboard) calls the request methods of one
:class:`Steering`; the engine reads them between optimiser steps, through
:meth:`engine.run.queue.Queue.poll`, as an :class:`engine.methods.method.Command`. Stopping has one
channel, :meth:`Steering.request_stop`; the engine blocks only while paused.
"""

from __future__ import annotations

import threading
from typing import Any


class Steering:
    """Thread-safe requests to the engine; the engine takes them between steps."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running = threading.Event()
        self._running.set()
        self._skip: set[str | None] = set()  # names to skip; None: the whole running batch
        self._spec: Any = None  # engine.spec.Spec offered by a live edit
        self.stop_count = 0  # a second stop request means "force exit" to the faces

    # --- stop -------------------------------------------------------------
    def request_stop(self) -> int:
        """Ask the engine to stop between steps; returns how many times it was asked."""
        with self._lock:
            self.stop_count += 1
            count = self.stop_count
        self._stop.set()
        self._running.set()  # a paused engine must wake up to stop
        return count

    @property
    def stop_requested(self) -> bool:
        return self._stop.is_set()

    # --- pause ------------------------------------------------------------
    def pause(self) -> None:
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def toggle_pause(self) -> bool:
        """Flip pause; returns True when now paused."""
        if self._running.is_set():
            self.pause()
            return True
        self.resume()
        return False

    @property
    def paused(self) -> bool:
        return not self._running.is_set()

    def wait_while_paused(self, timeout: float | None = None) -> bool:
        """Block while paused (or until timeout); returns True when running."""
        return self._running.wait(timeout)

    # --- skip -------------------------------------------------------------
    def request_skip(self, name: str | None = None) -> None:
        """Skip one experiment (running or pending), or with no name the whole running batch."""
        with self._lock:
            self._skip.add(name)

    def take_skip(self) -> set[str | None]:
        """The skip requests since the last call (``None`` in it: the whole running batch)."""
        with self._lock:
            skip, self._skip = self._skip, set()
            return skip

    # --- live reload ------------------------------------------------------
    def replace_spec(self, spec: Any) -> None:
        """Offer a new valid config; the engine applies it to pending experiments."""
        with self._lock:
            self._spec = spec

    def take_spec(self) -> Any:
        with self._lock:
            spec, self._spec = self._spec, None
            return spec
