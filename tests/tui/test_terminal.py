"""`embopt-tui` in a real pseudo-terminal, as a user over SSH runs it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
from tui_helpers import REPO, SMALL_QUEUE, WAIT_S, queue_toml, results_json

RUN_FILES = ("config.toml", "events.jsonl", "results.json", "results.md", "results.csv", "embeddings.safetensors")
DESIGN_FIELDS = (
    "name",
    "init_text",
    "lr",
    "steps",
    "objective",
    "status",
    "init_sim",
    "final_sim",
    "best_sim",
    "improvement",
    "oracle_sim",
    "roundtrip_sim",
    "decoded_z",
    "decoded_predictions",
    "exact_match",
    "seconds",
    "error",
)


def embopt_tui() -> str:
    return str(Path(sys.executable).parent / "embopt-tui")


def spawn(args: list[str], cwd: Path, *, size: tuple[int, int] = (24, 80)) -> pexpect.spawn:
    env = dict(os.environ, TERM="xterm-256color", EMBOPT_THREADS="1", PYTHONPATH=str(REPO))
    env.pop("EMBOPT_TUI_STABLE", None)
    return pexpect.spawn(embopt_tui(), args, cwd=str(cwd), env=env, dimensions=size, encoding="utf-8", timeout=WAIT_S)


def test_dashboard_in_a_pty_runs_a_two_experiment_queue_and_quits_cleanly(tmp_path):
    config = tmp_path / "experiments.toml"
    config.write_text(queue_toml(SMALL_QUEUE[:2]), encoding="utf-8")
    child = spawn(["--runs-dir", "runs", "experiments.toml"], tmp_path)
    try:
        child.expect("loading models")  # on screen while the engine thread imports torch and loads
        child.expect("done 2/2")  # the status bar once the queue finished
        child.expect("Init Text")  # the results table took over the screen
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before

    (run_dir,) = (tmp_path / "runs").iterdir()
    for name in RUN_FILES:
        assert (run_dir / name).is_file(), name
    saved = results_json(run_dir)
    assert saved["status"] == "done" and list(saved["best"].values())[0] in ("baseline", "higher_lr")
    assert [r["name"] for r in saved["experiments"]] == ["baseline", "higher_lr"]
    for row in saved["experiments"]:
        assert row["status"] == "done" and all(field in row for field in DESIGN_FIELDS)
    assert "| Experiment |" in (run_dir / "results.md").read_text(encoding="utf-8")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_in_a_pty_saves_the_running_experiment_as_interrupted(tmp_path, sig):
    config = tmp_path / "experiments.toml"
    config.write_text(queue_toml(SMALL_QUEUE[:1], steps=100_000), encoding="utf-8")
    child = spawn(["--runs-dir", "runs", "experiments.toml"], tmp_path)
    try:
        child.expect("step [1-9]")  # optimising
        child.kill(sig)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = results_json(run_dir)
    assert saved["status"] == "interrupted"
    assert saved["experiments"][0]["status"] == "interrupted" and saved["experiments"][0]["steps_done"] >= 1


def test_the_dashboard_module_leaves_torch_unimported():
    """What puts the first frame up before the models load: torch comes in with the engine thread."""
    code = (
        "import sys, embopt_tui.dashboard.app;"
        " print(sorted(m for m in ('torch', 'fairseq2', 'sonar') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
