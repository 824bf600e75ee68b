"""Fixtures of the dashboard tests; the helpers live in tui_helpers.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from tui_helpers import SMALL_QUEUE, queue_toml


@pytest.fixture
def small_queue(tmp_path: Path) -> Path:
    path = tmp_path / "experiments.toml"
    path.write_text(queue_toml(SMALL_QUEUE), encoding="utf-8")
    return path
