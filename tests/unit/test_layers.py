"""The import layers (pyproject.toml, [tool.importlinter]) hold, and the contract fails when one is broken."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def copy_tree(to: Path) -> Path:
    for package in ("engine", "embopt_tui"):
        shutil.copytree(REPO / package, to / package, ignore=shutil.ignore_patterns("assets", "__pycache__", "*.md"))
    shutil.copy(REPO / "pyproject.toml", to / "pyproject.toml")
    return to


def lint(tree: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tree,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_layers_hold_and_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    assert lint(tree).returncode == 0

    events = tree / "engine" / "events.py"
    events.write_text(events.read_text(encoding="utf-8") + "\nfrom engine.run import runner  # upward\n")
    broken = lint(tree)
    assert broken.returncode != 0
    assert "engine.events is not allowed to import engine.run" in broken.stdout


def test_the_engine_importing_a_face_breaks_the_contract(tmp_path: Path) -> None:
    tree = copy_tree(tmp_path)
    store = tree / "engine" / "rundir" / "store.py"
    store.write_text(store.read_text(encoding="utf-8") + "\nimport textual  # a face\n")
    broken = lint(tree)
    assert broken.returncode != 0
    assert "engine.rundir.store -> textual" in broken.stdout
