"""Ends a private Ray cluster whose driver died without shutting it down (SIGKILL, a forced second Ctrl+C).

Ray ties its head daemons to the driver's thread, but not the agents the
raylet starts (they outlived a SIGKILLed driver here). This process, started
beside the cluster in a session of its own, notes the driver's descendants
every half second; when the driver is gone it SIGKILLs those still alive (the
same process: same start time) and removes the cluster's temp dir. It exits
quietly once that dir is removed, which a normal shutdown does.

    python -m engine.run.executors.reaper DRIVER_PID TEMP_DIR
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time

POLL_S = 0.5


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[19])


def _descendants(root: int) -> dict[int, int]:
    """pid -> start time of every live descendant of ``root``."""
    parents: dict[int, list[tuple[int, int]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                parents.setdefault(stat[0], []).append((int(entry), stat[1]))
    found, todo = {}, [root]
    while todo:
        for pid, start in parents.get(todo.pop(), []):
            if pid not in found:
                found[pid] = start
                todo.append(pid)
    return found


def main(argv: list[str]) -> None:
    driver, temp_dir = int(argv[1]), argv[2]
    me = os.getpid()
    seen: dict[int, int] = {}
    while _stat(driver) is not None:
        if not os.path.isdir(temp_dir):
            return  # shut down normally
        seen.update({pid: start for pid, start in _descendants(driver).items() if pid != me})
        time.sleep(POLL_S)
    for pid, start in seen.items():
        stat = _stat(pid)
        if stat is not None and stat[1] == start:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    shutil.rmtree(temp_dir, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv)
