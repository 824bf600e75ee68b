"""The on-disk cache of encoded sentence banks: one folder per (bank content, encoder, dtype).

A folder holds ``texts.txt`` (the bank's sentences, deduplicated, one a line),
``offsets.npy`` (int64 [N + 1]: where each line starts, then the file's size),
``embeddings.npy`` (float32 [N, D], memory-mapped when read) and, written last,
``manifest.json``: what was encoded by what, and the size and SHA-256 of every file.

A folder is built under a unique temporary name beside its final one and renamed
into place whole, so readers see a complete entry or none, and two processes
building the same bank never write into each other's files. Before it is used,
every file is checked against the manifest; anything that does not match (a
truncated file, a wrong header, a flipped byte, a manifest that describes other
data) makes the entry invalid, and :mod:`engine.banks.bank` rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import socket
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

FORMAT = 1
CACHE_ENV = "EMBOPT_CACHE_DIR"
TEXTS, OFFSETS, EMBEDDINGS, MANIFEST = "texts.txt", "offsets.npy", "embeddings.npy", "manifest.json"
FILES = (TEXTS, OFFSETS, EMBEDDINGS)
_BLOCK = 4 << 20


def cache_root() -> Path:
    """``$EMBOPT_CACHE_DIR``, else ``$XDG_CACHE_HOME/embopt-tui``, else ``~/.cache/embopt-tui``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "embopt-tui"


def banks_dir() -> Path:
    return cache_root() / "banks"


def entry_name(key: Mapping[str, str]) -> str:
    """``<encoder>-<dtype>-<hash of the whole key>``: readable enough to know what to delete."""
    encoder = re.sub(r"[^A-Za-z0-9_.-]", "_", key["encoder"])[:48]
    digest = hashlib.sha256(json.dumps(dict(key), sort_keys=True).encode()).hexdigest()[:24]
    return f"{encoder}-{key['dtype']}-{digest}"


def file_record(path: Path) -> dict[str, Any]:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return {"bytes": path.stat().st_size, "sha256": h.hexdigest()}


def entry_problem(folder: Path, key: Mapping[str, str]) -> str | None:
    """Why the cache folder cannot be trusted for ``key``; None when every check passes."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text("utf-8"))
    except FileNotFoundError:
        return "no manifest"
    except (OSError, ValueError) as err:
        return f"unreadable manifest ({err})"
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        return "manifest of another format"
    if any(manifest.get(name) != value for name, value in key.items()):
        return "manifest of another bank, encoder or dtype"
    count, dim, files = manifest.get("count"), manifest.get("dim"), manifest.get("files")
    if not (isinstance(count, int) and count > 0 and isinstance(dim, int) and dim > 0 and isinstance(files, dict)):
        return "manifest without count, dim or files"
    for name in FILES:
        path = folder / name
        if not path.is_file():
            return f"{name} missing"
        if files.get(name) != file_record(path):
            return f"{name} does not match its size or checksum"
    try:
        offsets = np.load(folder / OFFSETS, mmap_mode="r")
        embeddings = np.load(folder / EMBEDDINGS, mmap_mode="r")
    except (OSError, ValueError) as err:
        return f"unreadable array ({err})"
    if offsets.dtype != np.int64 or offsets.shape != (count + 1,):
        return f"{OFFSETS} does not hold {count + 1} int64 offsets"
    if offsets[0] != 0 or offsets[-1] != files[TEXTS]["bytes"] or np.any(np.diff(offsets) < 1):
        return f"{OFFSETS} does not describe {TEXTS}"
    if embeddings.dtype != np.float32 or embeddings.shape != (count, dim) or not embeddings.flags.c_contiguous:
        return f"{EMBEDDINGS} is not float32 [{count}, {dim}]"
    return None


def read_manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text("utf-8"))


def write_manifest(folder: Path, manifest: Mapping[str, Any]) -> None:
    """Record every file's size and checksum, then write the manifest atomically (temp file + os.replace).

    No fsync: whatever a crash leaves half-written fails its checksum and is rebuilt.
    """
    full = {**manifest, "format": FORMAT, "files": {name: file_record(folder / name) for name in FILES}}
    tmp = folder / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(full, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, folder / MANIFEST)


def temp_folder(final: Path) -> Path:
    """A fresh folder beside ``final``, named for this host and process so stale ones can be told apart."""
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(final)
    tmp = final.parent / f".{final.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    return tmp


def _remove_abandoned(final: Path) -> None:
    """Temporary folders for ``final`` left by processes of this host that no longer run."""
    host = socket.gethostname()
    for path in final.parent.glob(f".{final.name}.*.tmp"):
        parts = path.name[len(final.name) + 2 : -len(".tmp")].rsplit(".", 2)
        if len(parts) == 3 and parts[0] == host and parts[1].isdigit() and not _alive(int(parts[1])):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish(tmp: Path, final: Path, key: Mapping[str, str]) -> None:
    """Rename the finished ``tmp`` to ``final``; if another process got there first with a valid entry, keep theirs."""
    for _ in range(3):
        try:
            os.rename(tmp, final)
            return
        except OSError:
            if not final.exists():
                raise
        if entry_problem(final, key) is None:
            shutil.rmtree(tmp, ignore_errors=True)
            return
        # An invalid entry is in the way: move it aside (atomic), then delete it.
        trash = final.parent / f".{final.name}.{uuid.uuid4().hex[:8]}.trash"
        try:
            os.rename(final, trash)
        except FileNotFoundError:
            continue
        shutil.rmtree(trash, ignore_errors=True)
    raise OSError(f"could not publish the bank cache {final}")
