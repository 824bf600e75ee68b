"""Shared test set-up: single-threaded torch and tiny random-init cards.

fairseq2 reads card directories once per process, when its asset store is
first built, so the tiny cards are written by a subprocess before any test
runs and exposed through FAIRSEQ2_USER_ASSET_DIR (inherited by the CLI
subprocesses too). The shipped mini cards need nothing: the package
registers them as a fairseq2 extension.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Before torch is imported anywhere: 10-40x faster on small shared machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("EMBOPT_THREADS", "1")


_BUILT = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    if "EMBOPT_TINY_DIR" in os.environ:  # already built (xdist worker, nested run)
        return
    tiny_dir = Path(tempfile.mkdtemp(prefix="embopt-tiny-"))
    subprocess.run(
        [sys.executable, "-m", "engine.mini.tiny", str(tiny_dir)],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    os.environ["EMBOPT_TINY_DIR"] = str(tiny_dir)
    os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(tiny_dir)
    config.stash[_BUILT] = tiny_dir


def pytest_unconfigure(config: pytest.Config) -> None:
    built = config.stash.get(_BUILT, None)
    if built is not None:  # only the session that built it removes it (every run left one in /tmp)
        shutil.rmtree(built, ignore_errors=True)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # The Ray tests start a cluster inside this process; whatever Ray leaves behind after ray.shutdown (its
    # SIGTERM handler, threads of its core worker) then meets no other test.
    items.sort(key=lambda item: Path(item.path).parent.name == "ray")  # stable: the rest keep their order


@pytest.fixture(scope="session", autouse=True)
def _single_thread_torch() -> None:
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def tiny_dir() -> Path:
    """Folder with cards `tiny_encoder`/`tiny_decoder` (tokenizer in the encoder card) and `predictor/`."""
    return Path(os.environ["EMBOPT_TINY_DIR"])


@pytest.fixture(scope="session")
def tiny_backend(tiny_dir: Path):
    from engine.spec import Backend

    return Backend(
        kind="mini",
        encoder="tiny_encoder",
        decoder="tiny_decoder",
        tokenizer="tiny_encoder",
        predictor=str(tiny_dir / "predictor"),
        device="cpu",
    )


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """An offline Hugging Face home (HF_HOME set, HF_HUB_OFFLINE=1, for this test and its subprocesses).

    Returns ``publish(repo, source, commit, refs=("main",))``: lays the files of ``source`` into
    ``HF_HOME/hub/models--owner--name`` as huggingface_hub does (content-addressed blobs, a snapshot
    folder of relative symlinks per commit, refs naming commits) and returns the snapshot folder.
    """
    import hashlib

    home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HUGGINGFACE_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")

    def publish(repo: str, source: Path, commit: str, refs: tuple[str, ...] = ("main",)) -> Path:
        storage = home / "hub" / f"models--{repo.replace('/', '--')}"
        snapshot = storage / "snapshots" / commit
        snapshot.mkdir(parents=True)
        (storage / "blobs").mkdir(exist_ok=True)
        for file in sorted(p for p in Path(source).iterdir() if p.is_file()):
            data = file.read_bytes()
            blob = storage / "blobs" / hashlib.sha256(data).hexdigest()
            blob.write_bytes(data)
            (snapshot / file.name).symlink_to(os.path.relpath(blob, snapshot))
        for ref in refs:
            (storage / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
            (storage / "refs" / ref).write_text(commit)  # no newline, as huggingface_hub writes it
        return snapshot

    return publish
