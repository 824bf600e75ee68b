"""Shared test set-up: single-threaded torch and tiny random-init cards.

fairseq2 reads card directories once per process, when its asset store is
first built, so the tiny cards are written by a subprocess before any test
runs and exposed through FAIRSEQ2_USER_ASSET_DIR (inherited by the CLI
subprocesses too). The shipped mini cards need nothing: the package
registers them as a fairseq2 extension.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# Before torch is imported anywhere: 10-40x faster on small shared machines.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("EMBOPT_THREADS", "1")


def pytest_configure(config: pytest.Config) -> None:
    if "EMBOPT_TINY_DIR" in os.environ:  # already built (xdist worker, nested run)
        return
    tiny_dir = Path(tempfile.mkdtemp(prefix="embopt-tiny-"))
    subprocess.run(
        [sys.executable, "-m", "engine.tiny", str(tiny_dir)],
        check=True,
        cwd=REPO,
        capture_output=True,
    )
    os.environ["EMBOPT_TINY_DIR"] = str(tiny_dir)
    os.environ["FAIRSEQ2_USER_ASSET_DIR"] = str(tiny_dir)


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
