"""Files people point the tool at, read within bounds; files the tool writes, with the user's permissions.

A config, a predictor's ``config.json`` or a sentence bank named in a config
could be a FIFO (an ``open`` that waits for ever), a link to ``/dev/zero`` (a
read that never ends) or simply huge. :func:`read_regular` opens without
waiting, refuses anything but a regular file and reads at most ``limit`` bytes.

What the tool writes gets the permissions the user's umask gives a new file
(:func:`umask`), never wider than the file it was copied from
(:func:`private_mode`). :func:`write_atomic` replaces a file whole, through a
temporary name no other writer uses.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from pathlib import Path

KINDS = {
    stat.S_IFDIR: "a directory",
    stat.S_IFIFO: "a named pipe (FIFO)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


class FileRefused(ValueError):
    """A path that is not a regular file of a readable size: ``str(err)`` says why, without the path."""


def size_text(n: int) -> str:
    """Bytes for people: ``512 bytes``, ``8 KiB``, ``1.5 MiB``."""
    value, unit = float(n), "bytes"
    for larger in ("KiB", "MiB", "GiB", "TiB"):
        if value < 1024:
            break
        value, unit = value / 1024, larger
    return f"{n} bytes" if unit == "bytes" else f"{value:.3g} {unit}"


def kind_problem(mode: int) -> str | None:
    """Why a file of ``mode`` (``st_mode``) is not a regular file; None when it is."""
    if stat.S_ISREG(mode):
        return None
    return f"not a regular file: it is {KINDS.get(stat.S_IFMT(mode), 'a special file')}"


def read_regular(path: str | Path, limit: int) -> bytes:
    """The bytes of the regular file ``path``, at most ``limit`` of them.

    Raises :class:`FileRefused` for anything else (a FIFO, a device, a
    directory, a file larger than ``limit``) and ``OSError`` when it cannot be
    opened. A FIFO opens without waiting for a writer (``O_NONBLOCK``), so the
    refusal is immediate.
    """
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        problem = kind_problem(info.st_mode)
        if problem:
            raise FileRefused(problem)
        if info.st_size > limit:
            raise FileRefused(f"{size_text(info.st_size)}, more than the {size_text(limit)} allowed")
        os.set_blocking(fd, True)
        chunks, left = [], limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:  # it grew while being read
            raise FileRefused(f"more than the {size_text(limit)} allowed")
        return data
    finally:
        os.close(fd)


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` sets it, racing every other thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def private_mode(source: str | Path) -> int:
    """The mode for a file holding a copy of ``source``: the umask's, narrowed to who may read ``source``."""
    read_bits = os.stat(source).st_mode & 0o444
    return 0o666 & ~umask() & (read_bits | read_bits >> 1)  # r and w only where the source is readable


def dir_mode(file_mode: int) -> int:
    """A folder's mode matching ``file_mode``: search (x) wherever read is allowed."""
    return file_mode | (file_mode & 0o444) >> 2


def apply_umask(root: str | Path) -> None:
    """Give every folder and file under ``root`` (itself included) the modes the umask gives new ones.

    For trees copied from programs that make their folders world-writable (Ray's session logs).
    """
    mask = umask()
    for folder, _, names in os.walk(root):
        os.chmod(folder, 0o777 & ~mask)
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, (0o666 | (os.stat(path).st_mode & 0o111)) & ~mask)


def write_atomic(path: str | Path, data: str | bytes) -> None:
    """Replace ``path`` with ``data``: readers see the old file or the new one, never half of one.

    The temporary file is unique to this writer (pid and a random tag), so two
    writers never rename each other's half-written files; it is synced before
    the rename and the folder after it, and removed if anything fails (the
    OSError is raised: the caller says what it was writing).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
        try:
            view = memoryview(payload)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    sync_folder(path.parent)


def sync_folder(folder: str | Path) -> None:
    """Make a rename or a new file in ``folder`` durable (where the file system allows a folder to be synced)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def stale_temporaries(folder: str | Path) -> list[Path]:
    """The temporary files :func:`write_atomic` left in ``folder`` when its process died mid-write."""
    return [p for p in Path(folder).glob(".*.tmp") if p.is_file()]
