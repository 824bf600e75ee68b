"""How many CPU threads torch may use in the process that runs the batches."""

from __future__ import annotations

import os

from engine.spec import Spec
from engine.spec.limits import cpu_cores

THREADS_ENV = "EMBOPT_THREADS"  # torch intra-op threads; tests and shared machines set 1


def threads_from_env() -> int | None:
    """The thread count asked for by EMBOPT_THREADS; ValueError when it is not an integer from 1 to the core count."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return None
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{THREADS_ENV}={raw!r}: expected a positive integer")
    if value > cpu_cores():
        raise ValueError(f"{THREADS_ENV}={value}: more threads than this machine's {cpu_cores()} CPU cores")
    return value


def thread_limit(spec: Spec) -> int | None:
    """torch threads for a process that runs ``spec``'s batches: EMBOPT_THREADS, else 1 for the embedded default.

    The mini models are so small that torch's thread hand-offs cost more than
    they save: one thread runs the shipped queue 2x faster than two here, and
    far faster on a machine shared with other jobs. Real models keep torch's default (None).
    """
    threads = threads_from_env()
    if threads is None and spec.backend.kind == "mini" and spec.backend.device != "cuda":
        threads = 1
    return threads


def apply_thread_limit(spec: Spec) -> None:
    """Set :func:`thread_limit` in this process (it runs the batches: inline, or a Ray worker)."""
    threads = thread_limit(spec)
    if threads is not None:
        import torch

        torch.set_num_threads(threads)
