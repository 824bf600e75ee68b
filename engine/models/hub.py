"""Models named by their Hugging Face hub id (``owner/name[@revision]``): SONAR-LLM predictors, fluency LMs.

Resolved through ``huggingface_hub.snapshot_download`` into its standard cache,
so ``HF_HOME``, ``HF_HUB_CACHE`` and ``HF_HUB_OFFLINE`` mean what they mean for
every other Hugging Face tool, and a model fetched once is found again offline.
Only the files a :class:`Layout` names are fetched: for a SONAR-LLM predictor
``config.json`` and one weights file (its repositories may hold files a vector
predictor never reads), for a language model those and its tokenizer's.

Download progress: huggingface_hub 0.36 draws its byte bars with its own tqdm
(``snapshot_download``'s ``tqdm_class`` only counts whole files), so the bytes
are read off the cache folder while the download runs instead, from the sizes
the hub lists. Its own bars are switched off: they would write over the dashboard.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.models.predictor_dir import CONFIG_FILE, WEIGHT_FILES, PredictorError, predictor_dir_problem
from engine.text import error_line

Progress = Callable[[str, float], None]
POLL_SECONDS = 0.25


@dataclass(frozen=True)
class Layout:
    """What a kind of model directory holds: the files to fetch, and why a folder is not one (None: it is)."""

    what: str  # "SONAR-LLM", "language model": said in errors
    files: tuple[str, ...]  # the files fetched when the repository has them
    problem: Callable[[Path], str | None]


PREDICTOR = Layout("SONAR-LLM", (CONFIG_FILE, *WEIGHT_FILES), predictor_dir_problem)


@dataclass(frozen=True)
class HubSnapshot:
    repo: str
    revision: str  # the commit hash of the snapshot
    path: Path  # HF cache snapshot folder holding config.json and the weights


def cache_dir() -> Path:
    """huggingface_hub's cache folder by its own rules, read now (its constants are fixed when it is imported)."""
    env = os.environ
    if env.get("HF_HUB_CACHE") or env.get("HUGGINGFACE_HUB_CACHE"):
        return Path(os.path.expandvars(env.get("HF_HUB_CACHE") or env["HUGGINGFACE_HUB_CACHE"])).expanduser()
    cache = env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    home = env.get("HF_HOME") or os.path.join(cache, "huggingface")
    return Path(os.path.expandvars(home)).expanduser() / "hub"


def offline() -> bool:
    value = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return value.strip().upper() in ("1", "ON", "YES", "TRUE")


def fetch(
    repo: str, revision: str | None = None, progress: Progress | None = None, layout: Layout = PREDICTOR
) -> HubSnapshot:
    """The snapshot of ``repo`` at ``revision`` (default ``main``), downloaded unless cached; raises PredictorError."""
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()
    report = progress or (lambda stage, fraction: None)
    ref = revision or "main"
    label = repo if revision is None else f"{repo}@{revision}"
    report(f"resolving {label}", 0.0)
    files, unreachable = (None, "HF_HUB_OFFLINE is set") if offline() else _listing(repo, ref, label, layout)
    if files is None:
        path = _cached(repo, ref, label, unreachable, layout)
    else:
        path = _download(repo, ref, label, files, report)
    problem = layout.problem(path)
    if problem:
        raise PredictorError(f"{label}: snapshot {path}: {problem}")
    report(f"{label} ready", 1.0)
    return HubSnapshot(repo, path.name, path)


def _listing(repo: str, ref: str, label: str, layout: Layout) -> tuple[dict[str, int] | None, str]:
    """Files to fetch with their sizes (None when the hub cannot be asked, with the reason)."""
    from huggingface_hub import HfApi
    from huggingface_hub.errors import RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().model_info(repo, revision=ref, files_metadata=True)
    except RevisionNotFoundError:
        raise PredictorError(f"{label}: the Hugging Face hub has no revision {ref!r} of {repo}") from None
    except RepositoryNotFoundError:
        raise PredictorError(
            f"{label}: no such model on the Hugging Face hub (private or gated ones need `hf auth login`)"
        ) from None
    except Exception as err:  # no network, proxy, hub down: the cache may still hold it
        return None, f"the hub cannot be reached ({type(err).__name__}: no network?)"
    sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or ()}
    weights = next((name for name in WEIGHT_FILES if name in sizes), None)
    if CONFIG_FILE not in sizes or weights is None:
        missing = CONFIG_FILE if CONFIG_FILE not in sizes else " or ".join(WEIGHT_FILES)
        raise PredictorError(f"{label}: not a {layout.what} repository (no {missing} at its root)")
    wanted = {name: size for name, size in sizes.items() if name in layout.files and name not in WEIGHT_FILES}
    return {**wanted, weights: sizes[weights]}, ""


def _cached(repo: str, ref: str, label: str, why: str, layout: Layout = PREDICTOR) -> Path:
    from huggingface_hub import snapshot_download

    try:
        found = snapshot_download(
            repo,
            revision=ref,
            cache_dir=cache_dir(),
            allow_patterns=list(layout.files),
            local_files_only=True,
        )
    except Exception:
        raise PredictorError(
            f"{label}: not in the Hugging Face cache ({cache_dir()}; HF_HOME or HF_HUB_CACHE set it) and {why};"
            " run once online to download it"
        ) from None
    return Path(found)


def cached_snapshot(repo: str, revision: str | None = None, layout: Layout = PREDICTOR) -> Path:
    """The cached snapshot of ``repo`` at ``revision``, without the network (raises PredictorError when absent)."""
    label = repo if revision is None else f"{repo}@{revision}"
    path = _cached(repo, revision or "main", label, "nothing is downloaded when checking", layout)
    problem = layout.problem(path)
    if problem:
        raise PredictorError(f"{label}: snapshot {path}: {problem}")
    return path


def _download(repo: str, ref: str, label: str, files: dict[str, int], report: Progress) -> Path:
    from huggingface_hub import snapshot_download

    storage = cache_dir() / f"models--{repo.replace('/', '--')}"  # huggingface_hub's repo_folder_name
    blobs = storage / "blobs"
    before = set(blobs.iterdir()) if blobs.is_dir() else set()
    total = sum(files.values())
    outcome: dict[str, Any] = {}

    def work() -> None:
        try:
            outcome["path"] = snapshot_download(
                repo, revision=ref, cache_dir=cache_dir(), allow_patterns=list(files), max_workers=2
            )
        except Exception as err:  # shown as one line by the caller's thread
            outcome["error"] = err

    thread = threading.Thread(target=work, name="hub-download", daemon=True)
    thread.start()
    while thread.is_alive():
        thread.join(POLL_SECONDS)
        done = min(total, _new_bytes(blobs, before))
        if done:
            report(f"downloading {label} {_amount(done, total)}", done / total if total else 0.0)
    if "error" in outcome:
        raise PredictorError(f"{label}: download failed: {error_line(outcome['error'])}")
    return Path(outcome["path"])


def _new_bytes(blobs: Path, before: set[Path]) -> int:
    """Bytes written into the cache since the download began (finished blobs and ``.incomplete`` ones)."""
    total = 0
    try:
        entries = list(blobs.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if entry not in before:
            try:
                total += entry.stat().st_size
            except OSError:  # renamed from .incomplete between listing and stat
                pass
    return total


def _amount(done: int, total: int) -> str:
    unit, size = next(((u, s) for u, s in (("GB", 1e9), ("MB", 1e6)) if total >= s), ("kB", 1e3))
    return f"{done / size:.1f}/{total / size:.1f} {unit}"
