"""The boundaries, tested rather than hoped for: each module imported alone in a fresh interpreter.

- no engine module imports textual, rich or embopt_tui (the engine has no face);
- the modules the CLI needs at start-up (``--help``, ``--check``, ``report``) do not import torch;
- ray loads only for the ray executor: not at start-up, not for an inline run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FACES = ("textual", "rich", "embopt_tui")
HEAVY = ("torch", "fairseq2", "sonar", "ray")
# What `embopt-tui --check` / `report` / starting a run load before the engine thread starts.
LIGHT = (
    "embopt_tui.cli",
    "engine.spec",
    "engine.events",
    "engine.results",
    "engine.methods",
    "engine.banks.source",
    "engine.run.steering",
    "engine.run.queue",
    "engine.run.threads",
    "engine.run.session",
    "engine.rundir.report",
    "engine.rundir.store",
)

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
    assert "engine.rundir.store" in modules and "engine.spec" in modules
    assert offenders(modules, FACES) == {}


def test_cli_start_up_modules_leave_torch_unimported() -> None:
    assert offenders(list(LIGHT), HEAVY) == {}


INLINE_RUN = """
import sys
from pathlib import Path
from engine.mini.corpus import LILY_STORY
from engine.run.runner import run_queue
from engine.spec import Backend, Experiment, Spec, Story

backend = Backend(encoder="tiny_encoder", decoder="tiny_decoder", tokenizer="tiny_encoder",
                  predictor=sys.argv[1], device="cpu")
spec = Spec(Path("experiments.toml"), backend, {"lily": Story("lily", LILY_STORY)}, (Experiment("a", "Hi.", steps=1),))
assert run_queue(spec, lambda event: None).status == "done"
print("ray" in sys.modules, "engine.run.executors.ray" in sys.modules)
"""


def test_an_inline_run_never_imports_ray(tiny_dir) -> None:
    out = subprocess.run(
        [sys.executable, "-c", INLINE_RUN, str(tiny_dir / "predictor")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
