"""The boundaries, tested rather than hoped for: each module imported alone in a fresh interpreter.

- no engine module imports textual, rich or embopt_tui (the engine has no face);
- the modules the CLI needs at start-up (``--help``, ``--check``, ``report``) do not import torch.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FACES = ("textual", "rich", "embopt_tui")
HEAVY = ("torch", "fairseq2", "sonar")
# What `embopt-tui --check` / `report` / starting a run load before the engine thread starts.
LIGHT = (
    "embopt_tui.cli", "engine.spec", "engine.events", "engine.control",
    "engine.report", "engine.store", "engine.session", "engine.bank_source", "engine.results",
    "engine.methods", "engine.methods.options",
)  # fmt: skip

PROBE = """
import importlib, sys
importlib.import_module(sys.argv[1])
banned = sys.argv[2].split(",")
print(",".join(sorted({m.split(".")[0] for m in sys.modules} & set(banned))))
"""


def engine_modules() -> list[str]:
    names = []
    for path in sorted((REPO / "engine").rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def offenders(modules: list[str], banned: tuple[str, ...]) -> dict[str, str]:
    """Module -> banned packages it pulled in (or its import error), probed in parallel fresh interpreters."""
    found: dict[str, str] = {}
    for start in range(0, len(modules), 4):  # a few at a time: small shared machines
        procs = {
            m: subprocess.Popen(
                [sys.executable, "-c", PROBE, m, ",".join(banned)],
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for m in modules[start : start + 4]
        }
        for module, proc in procs.items():
            out, err = proc.communicate(timeout=120)
            if proc.returncode != 0:
                found[module] = "import failed: " + (err.strip().splitlines() or ["?"])[-1]
            elif out.strip():
                found[module] = out.strip()
    return found


def test_engine_never_imports_a_face() -> None:
    modules = engine_modules()
    assert "engine.store" in modules and "engine.spec" in modules
    assert offenders(modules, FACES) == {}


def test_cli_start_up_modules_leave_torch_unimported() -> None:
    assert offenders(list(LIGHT), HEAVY) == {}
