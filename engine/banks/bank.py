"""Sentence banks: real sentences, encoded once, for the methods that search or project onto them.

``load_bank`` streams a bank's sentences (:mod:`engine.banks.source`), encodes them
in calls of similar lengths (sorted, batched by tokens: little padding), writes
them window by window into one [N, D] float32 file, and caches that
on disk (:mod:`engine.banks.cache`) under the bank's content hash, the encoder
card (and a sample of its weights) and the dtype, so the next run reads it back
without calling the encoder. Nothing holds a Python object per sentence: texts
stay in the cached text file (memory-mapped, found by an offsets array) and the
embeddings are a memory-mapped matrix, copied onto the accelerator when it fits.

A cache that cannot be written (a full or read-only disk) costs the cache, not
the run: the bank is encoded into memory instead (``SentenceBank.uncached``
says why). Its files are written with plain writes, never through a writable
memory map, whose pages a full disk turns into SIGBUS. An entry is readable by
whom the bank file is (a private bank stays private).
"""

from __future__ import annotations

import hashlib
import io
import itertools
import mmap
import os
import shutil
import time
from array import array
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import Tensor

from engine import files
from engine.banks import cache
from engine.banks.source import (
    BANK_CORPUS,
    NO_SENTENCES,
    BankError,
    bank_digest,
    bank_label,
    iter_bank_sentences,
    resolve_bank_path,
)

BankProgress = Callable[[int, int], None]  # (sentences encoded, sentences in the bank)
CHUNK_ELEMENTS = 1 << 24  # floats one scoring chunk may hold (64 MiB): bounds nearest()'s [A, rows] block
SORT_WINDOW = 64  # chunks whose sentences are sorted by length before encoding, so batches pad little
BATCH_TOKENS = 8192  # tokens an encoder call may hold, padding included: long sentences come fewer to a call
DEVICE_SHARE = 0.5  # a bank goes onto the accelerator only if it takes at most this share of its free memory


class SentenceBank:
    """N sentences and their embeddings [N, D], read from one cache entry.

    ``embeddings`` is float32, on ``device`` when it fitted there, else a
    memory-mapped CPU tensor that :meth:`chunks` moves to ``device`` piece by
    piece. Treat it as read-only.
    """

    def __init__(
        self,
        manifest: Mapping[str, Any],
        offsets: np.ndarray,
        texts: Any,
        embeddings: Tensor,
        device: torch.device,
        *,
        cached: bool,
        folder: Path | None = None,
        uncached: str | None = None,
    ):
        self.folder = folder  # the cache entry read; None for a bank held in memory
        self.source: str = manifest["source"]  # "corpus" or the bank file's absolute path
        self.digest: str = manifest["digest"]  # SHA-256 of the bank's content
        self.encoder: str = manifest["encoder"]
        self.dtype: str = manifest["dtype"]
        self.cached = cached  # True: read from the cache; False: encoded by this load
        self.uncached = uncached  # why this load could not cache it (it lives in memory), else None
        self.build_seconds: float = manifest.get("seconds", 0.0)  # how long encoding took when the entry was built
        self.device = device
        self._offsets = offsets
        self._texts = texts  # bytes-like: every line, each ending in a newline
        self.embeddings = _place(embeddings, device)
        self._inverse_norms: Tensor | None = None

    @classmethod
    def from_folder(cls, folder: Path, device: torch.device, *, cached: bool) -> SentenceBank:
        """The bank of a cache entry: texts and embeddings memory-mapped, read as they are used."""
        with open(folder / cache.TEXTS, "rb") as f:
            texts = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        # Copy-on-write mapping: a writable tensor without reading the file in, and no write ever reaches the cache.
        embeddings = torch.from_numpy(np.load(folder / cache.EMBEDDINGS, mmap_mode="c"))
        offsets = np.load(folder / cache.OFFSETS)
        return cls(cache.read_manifest(folder), offsets, texts, embeddings, device, cached=cached, folder=folder)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __repr__(self) -> str:
        return f"SentenceBank({self.source!r}, {len(self)} sentences, dim {self.dim}, {self.encoder}/{self.dtype})"

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def text(self, index: int) -> str:
        i = int(index)
        if not -len(self) <= i < len(self):
            raise IndexError(f"sentence {i} of a bank of {len(self)}")
        i %= len(self)
        return self._texts[self._offsets[i] : self._offsets[i + 1] - 1].decode("utf-8")

    def texts(self, indices: Iterable[int] | Tensor) -> list[str]:
        if isinstance(indices, Tensor):
            indices = indices.flatten().tolist()
        return [self.text(i) for i in indices]

    def rows(self, indices: Iterable[int] | Tensor) -> Tensor:
        """The embeddings of ``indices`` [len, D], on ``device``."""
        index = torch.as_tensor(indices if isinstance(indices, Tensor) else list(indices), dtype=torch.long)
        return self.embeddings[index.to(self.embeddings.device)].to(self.device)

    def chunks(self, rows: int = 4096) -> Iterator[tuple[int, Tensor]]:
        """(first row, embeddings [<= rows, D] on ``device``) covering the bank once, in order."""
        if rows < 1:
            raise ValueError(f"rows must be positive, not {rows}")
        for start in range(0, len(self), rows):
            yield start, self.embeddings[start : start + rows].to(self.device, non_blocking=True)

    @torch.no_grad()
    def inverse_norms(self) -> Tensor:
        """1 / ||row|| for every row [N] on ``device`` (0 for a zero row), computed once."""
        if self._inverse_norms is None:
            parts = [chunk.norm(dim=1) for _, chunk in self.chunks(max(1, CHUNK_ELEMENTS // self.dim))]
            norms = torch.cat(parts)
            self._inverse_norms = torch.where(norms > 0, 1.0 / norms.clamp_min(1e-30), torch.zeros_like(norms))
        return self._inverse_norms

    @torch.no_grad()
    def nearest(self, z: Tensor, k: int = 1) -> tuple[Tensor, Tensor]:
        """The ``k`` bank rows of highest cosine to each row of ``z`` [A, D]: (indices [A, k], cosines [A, k]).

        Best first, on ``device``. Scored chunk by chunk: no [A, N] matrix larger
        than ``CHUNK_ELEMENTS`` floats is ever held.
        """
        if z.ndim != 2 or z.shape[1] != self.dim:
            raise ValueError(f"z must be [A, {self.dim}], not {list(z.shape)}")
        k = min(int(k), len(self))
        if k < 1:
            raise ValueError("k must be at least 1")
        z = z.detach().to(self.device, torch.float32)
        unit = z / z.norm(dim=1, keepdim=True).clamp_min(1e-30)
        inverse = self.inverse_norms()
        best_cos = torch.empty(z.shape[0], 0, device=self.device)
        best_idx = torch.empty(z.shape[0], 0, dtype=torch.long, device=self.device)
        for start, chunk in self.chunks(max(k, CHUNK_ELEMENTS // max(z.shape[0], self.dim))):
            cos = (unit @ chunk.T) * inverse[start : start + chunk.shape[0]]
            top_cos, top_idx = cos.topk(min(k, cos.shape[1]), dim=1)
            both_cos = torch.cat([best_cos, top_cos], dim=1)
            both_idx = torch.cat([best_idx, top_idx + start], dim=1)
            best_cos, pick = both_cos.topk(min(k, both_cos.shape[1]), dim=1)
            best_idx = both_idx.gather(1, pick)
        return best_idx, best_cos


def _place(embeddings: Tensor, device: torch.device) -> Tensor:
    """The matrix on ``device`` when it fits comfortably, else left memory-mapped on the CPU."""
    if device.type == "cpu":
        return embeddings
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        if embeddings.numel() * embeddings.element_size() > DEVICE_SHARE * free:
            return embeddings
    out = torch.empty(embeddings.shape, dtype=embeddings.dtype, device=device)
    rows = max(1, CHUNK_ELEMENTS // max(1, embeddings.shape[1]))
    for start in range(0, embeddings.shape[0], rows):
        out[start : start + rows] = embeddings[start : start + rows]
    return out


def encoder_fingerprint(space: Any) -> str:
    """A hash of a sample of the encoder's weights, so a model retrained under the same card name gets new entries."""
    model = getattr(getattr(space, "encoder_pipeline", None), "model", None)
    if model is None:
        return ""
    h = hashlib.sha256()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            flat = tensor.detach().flatten()
            sample = torch.cat([flat[:64], flat[-64:]]) if flat.numel() > 128 else flat
            h.update(f"{name} {tuple(tensor.shape)} {tensor.dtype};".encode())
            h.update(sample.float().cpu().numpy().tobytes())
    return h.hexdigest()[:32]


def load_bank(
    value: str,
    base_dir: str | Path,
    space: Any,
    *,
    encoder: str,
    dtype: str,
    progress: BankProgress | None = None,
    cache_dir: str | Path | None = None,
    chunk: int = 256,
    device: torch.device | str | None = None,
) -> SentenceBank:
    """The bank ``value`` names (``"corpus"`` or a file path relative to ``base_dir``), encoded by ``space``.

    Read from the cache when a valid entry exists (no encoder call); otherwise
    encoded at most ``chunk`` sentences per ``space.encode`` call (fewer when long:
    :data:`BATCH_TOKENS`), ``progress(done, total)`` called before the first call
    and after each one (it may raise to abandon the build: nothing is left
    behind), and cached. ``encoder`` and
    ``dtype`` are the backend's card name and dtype, part of the cache key.
    ``cache_dir`` overrides the folder of entries (default: ``banks/`` under
    :func:`engine.banks.cache.cache_root`). Raises :class:`BankError` for a
    missing, unreadable, non-UTF-8 or empty bank. A cache that cannot be
    written gives a bank held in memory (``uncached`` says why).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be positive, not {chunk}")
    key = {
        "digest": bank_digest(value, base_dir),
        "encoder": encoder,
        "dtype": dtype,
        "fingerprint": encoder_fingerprint(space),
    }
    root = Path(cache_dir).expanduser() if cache_dir is not None else cache.banks_dir()
    final = root / cache.entry_name(key)
    target = torch.device(device) if device is not None else torch.device(space.device)
    build = (value, base_dir, space, key, progress, chunk)
    if final.is_dir() and cache.entry_problem(final, key) is None:
        return SentenceBank.from_folder(final, target, cached=True)
    try:
        tmp = _writing(final.parent, cache.temp_folder, final)
    except CacheUnwritable as err:
        return _in_memory(build, target, str(err))
    try:
        manifest = _build(_FolderFiles(tmp), *build)
        _writing(tmp, cache.write_manifest, tmp, manifest)
        _restrict(tmp, value, base_dir)
        _writing(final, cache.publish, tmp, final, key)
    except CacheUnwritable as err:
        shutil.rmtree(tmp, ignore_errors=True)
        return _in_memory(build, target, str(err))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SentenceBank.from_folder(final, target, cached=False)


class CacheUnwritable(Exception):
    """The bank cache cannot be written (disk full, read-only, no permission): ``str(err)`` names the path."""


def _writing(path: Path, write: Callable[..., Any], *args: Any) -> Any:
    """``write(*args)``, a write into the cache at ``path``; its OSError as :class:`CacheUnwritable`."""
    try:
        return write(*args)
    except OSError as err:
        raise CacheUnwritable(f"{err.filename or path}: {err.strerror or err}") from None


class _FolderFiles:
    """A cache entry's files, built in a folder; a failed write is :class:`CacheUnwritable`."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def create(self, name: str) -> IO[bytes]:
        return _CacheFile(_writing(self.folder / name, open, self.folder / name, "wb"), self.folder / name)

    def read(self, name: str) -> IO[bytes]:
        return open(self.folder / name, "rb")


class _CacheFile:
    """A file of the cache being written: its OSErrors are :class:`CacheUnwritable`."""

    def __init__(self, f: IO[bytes], path: Path) -> None:
        self.f, self.path = f, path

    def write(self, data: Any) -> int:
        return _writing(self.path, self.f.write, data)

    def __enter__(self) -> _CacheFile:
        return self

    def __exit__(self, *exc: object) -> None:
        _writing(self.path, self.f.close)


class _MemoryFiles:
    """The same files held in memory, for a bank whose cache cannot be written."""

    def __init__(self) -> None:
        self.data: dict[str, io.BytesIO] = {}

    def create(self, name: str) -> IO[bytes]:
        self.data[name] = _KeptBytes()
        return self.data[name]

    def read(self, name: str) -> IO[bytes]:
        return io.BytesIO(self.data[name].getvalue())


class _KeptBytes(io.BytesIO):
    def close(self) -> None:  # closing a built file keeps its bytes for the bank to read
        pass


def _in_memory(build: tuple, device: torch.device, why: str) -> SentenceBank:
    """The bank encoded into memory, when its cache entry cannot be written."""
    built = _MemoryFiles()
    manifest = _build(built, *build)
    offsets = np.load(built.read(cache.OFFSETS))
    embeddings = torch.from_numpy(np.load(built.read(cache.EMBEDDINGS)))
    texts = built.data[cache.TEXTS].getvalue()
    return SentenceBank(manifest, offsets, texts, embeddings, device, cached=False, uncached=why)


def _restrict(folder: Path, value: str, base_dir: str | Path) -> None:
    """Make an entry readable by no one who cannot read its bank file (the umask's modes otherwise)."""
    if value == BANK_CORPUS:
        return
    mode = files.private_mode(resolve_bank_path(value, base_dir))
    for path in folder.iterdir():
        _writing(path, os.chmod, path, mode)
    _writing(folder, os.chmod, folder, files.dir_mode(mode))


def _build(
    out: _FolderFiles | _MemoryFiles,
    value: str,
    base_dir: str | Path,
    space: Any,
    key: Mapping[str, str],
    progress: BankProgress | None,
    chunk: int,
) -> dict[str, Any]:
    """Write the entry's texts, offsets and embeddings into ``out``; returns its manifest (without checksums)."""
    start = time.perf_counter()
    offsets = array("q", [0])
    with out.create(cache.TEXTS) as f:
        for sentence in iter_bank_sentences(value, base_dir):
            line = sentence.encode("utf-8") + b"\n"
            f.write(line)
            offsets.append(offsets[-1] + len(line))
    count = len(offsets) - 1
    if count == 0:
        raise BankError(NO_SENTENCES.format(resolve_bank_path(value, base_dir)))
    with out.create(cache.OFFSETS) as f:
        np.save(f, np.frombuffer(offsets, dtype=np.int64))
    dim = _encode_into(out, space, count, progress or (lambda done, total: None), chunk)
    seconds = round(time.perf_counter() - start, 3)
    return {**key, "count": count, "dim": dim, "source": bank_label(value, base_dir), "seconds": seconds}


def plan_batches(lengths: Sequence[int], rows: int, tokens: int | None = BATCH_TOKENS) -> list[list[int]]:
    """Indices of ``lengths`` in encoder calls: sorted by length, at most ``rows`` a call and, with ``tokens``,
    at most that many tokens once padded to the call's longest (a longer sentence alone still gets a call)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    batches: list[list[int]] = []
    for i in order:
        last = batches[-1] if batches else None
        fits = last is not None and len(last) < rows
        if fits and tokens is not None:
            fits = (len(last) + 1) * lengths[i] <= tokens  # sorted: this one is the longest so far
        if fits:
            last.append(i)
        else:
            batches.append([i])
    return batches


def _encode_into(out: _FolderFiles | _MemoryFiles, space: Any, count: int, progress: BankProgress, chunk: int) -> int:
    """Encode the texts into the embeddings file, window by window, in :func:`plan_batches`'s calls; returns D.

    Each window's rows are gathered in memory and written in order, so the
    file is written sequentially (a full disk is an OSError at a write).
    """
    progress(0, count)
    done, dim = 0, 0
    with out.read(cache.TEXTS) as f, out.create(cache.EMBEDDINGS) as embeddings, torch.inference_mode():
        lines = (raw[:-1].decode("utf-8") for raw in f)
        for first in range(0, count, chunk * SORT_WINDOW):
            window = list(itertools.islice(lines, chunk * SORT_WINDOW))
            block: np.ndarray | None = None
            for picked in plan_batches(space.source_lengths(window), chunk):
                vectors = space.encode([window[i] for i in picked]).float().cpu().numpy()
                if block is None:
                    block = np.empty((len(window), vectors.shape[1]), dtype=np.float32)
                block[np.asarray(picked)] = vectors
                done += len(picked)
                progress(done, count)
            assert block is not None
            if first == 0:
                dim = int(block.shape[1])
                header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False}
                np.lib.format.write_array_header_1_0(embeddings, {**header, "shape": (count, dim)})
            embeddings.write(block.tobytes())
    assert done == count
    return dim
