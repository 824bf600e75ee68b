"""The command with the ray executor, as a real subprocess with its own private cluster (tiny real models)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")  # a dependency of ray

REPO = Path(__file__).resolve().parents[2]
LILY = (
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside with her toys.",
    "One day, she saw a big tree in the sky.",
    "She wanted to climb it, but it was too high.",
)
WAIT_S = 300.0  # a bound for a hung run on a loaded 2-core machine, not a speed check


def config(tmp_path: Path, tiny_dir: Path, steps: int, executor: str = 'kind = "ray"\nworkers = 2') -> Path:
    path = tmp_path / "experiments.toml"
    path.write_text(
        '[backend]\nencoder = "tiny_encoder"\ndecoder = "tiny_decoder"\ntokenizer = "tiny_encoder"\n'
        f'predictor = {json.dumps(str(tiny_dir / "predictor"))}\ndevice = "cpu"\n\n'
        f"[executor]\n{executor}\n\n[defaults]\nsteps = {steps}\ndecode_every = {steps}\n\n"
        f"[stories.lily]\nsentences = {json.dumps(list(LILY))}\n\n"
        f"[stories.later]\nsentences = {json.dumps(list(LILY))}\noptimize = 1\ntargets = [2, 3]\n\n"
        '[[experiments]]\nname = "a"\ninit = "I like cheese."\nstory = "lily"\n\n'
        '[[experiments]]\nname = "b"\ninit = "There was a boy named Tom."\nstory = "later"\n',
        encoding="utf-8",
    )
    return path


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "embopt_tui", "--no-ui", *args]


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def run_dir_of(runs: Path) -> Path:
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    return run


def results(run: Path) -> dict:
    return json.loads((run / "results.json").read_text(encoding="utf-8"))


def alive(processes: list) -> list[str]:
    left = []
    for process in processes:
        try:
            if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                left.append(f"{process.pid} {process.name()}")
        except psutil.NoSuchProcess:
            continue
    return left


def start_until_both_workers_run(tmp_path: Path, tiny_dir: Path) -> tuple[subprocess.Popen, list[str]]:
    """A headless ray run of long experiments, read until both workers run a batch (the cluster is fully up)."""
    proc = subprocess.Popen(
        command("--runs-dir", str(tmp_path / "runs"), str(config(tmp_path, tiny_dir, steps=3000))),
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and sum(" runs " in seen for seen in lines) < 2:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
    assert sum(" runs " in seen for seen in lines) == 2, "".join(lines) + proc.stderr.read()
    return proc, lines


def wait_gone(processes: list) -> list[str]:
    for _ in range(100):  # daemons reaped a moment after the driver exits
        if not alive(processes):
            break
        time.sleep(0.1)
    return alive(processes)


def test_sigterm_exits_130_leaves_no_ray_process_and_the_run_resumes(tmp_path, tiny_dir):
    runs = tmp_path / "runs"
    proc, lines = start_until_both_workers_run(tmp_path, tiny_dir)
    cluster = psutil.Process(proc.pid).children(recursive=True)
    assert any(p.name() == "raylet" for p in cluster)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 130, "".join(lines) + out + err
    # Ray's own lines (its logger, "(raylet) ...") went to the run directory, not to the terminal.
    assert err.strip() == ""
    assert "raylet" not in "".join(lines) + out
    assert wait_gone(cluster) == []
    run = run_dir_of(runs)
    saved = results(run)
    assert saved["status"] == "interrupted"
    assert sorted(r["status"] for r in saved["experiments"]) == ["interrupted", "interrupted"]
    assert (run / "ray.log").is_file()
    assert "worker_started" in (run / "events.jsonl").read_text(encoding="utf-8")
    logs = run / "ray-logs"  # Ray makes its session folders 0777; the run directory's copy has the umask's modes
    assert logs.is_dir() and [p for p in [logs, *logs.rglob("*")] if p.lstat().st_mode & 0o002] == []

    # --resume, inline this time, with fewer steps in the copy of the config: every experiment ends done.
    copied = run / "config.toml"
    copied.write_text(copied.read_text(encoding="utf-8").replace("3000", "4"), encoding="utf-8")
    again = subprocess.run(
        command("--resume", str(run), "--executor", "inline"),
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert again.returncode == 0, again.stdout + again.stderr
    assert [r["status"] for r in results(run)["experiments"]] == ["done", "done"]


def test_a_killed_driver_leaves_no_ray_process(tmp_path, tiny_dir):
    """SIGKILL (or a forced second Ctrl+C) skips the shutdown: the reaper ends the agents Ray leaves behind."""
    proc, _ = start_until_both_workers_run(tmp_path, tiny_dir)
    cluster = psutil.Process(proc.pid).children(recursive=True)
    assert {"raylet", "gcs_server"} <= {p.name() for p in cluster}
    proc.kill()
    proc.communicate(timeout=WAIT_S)
    assert wait_gone(cluster) == []


LEAN_DRIVER = """
import json, sys
import psutil
from engine import events as ev
from engine.run.session import Session

seen = {}

def look(event):
    if isinstance(event, ev.WorkerStarted) and "daemons" not in seen:
        seen["daemons"] = [" ".join(p.cmdline()) for p in psutil.Process().children(recursive=True)]

session = Session.start(sys.argv[1], sys.argv[2], on_event=look)
status = session.run().status
print(json.dumps({"status": status, "torch": "torch" in sys.modules, **seen}))
"""


def test_a_ray_driver_loads_no_torch_and_its_cluster_runs_no_idle_daemons(tmp_path, tiny_dir):
    """The driver only hands out batches: torch (2-3 s of imports) is for the workers. The private head runs no
    API server (an HTTP server nobody asks), autoscaler monitor or log monitor: ray.init waited ~1 s for the first."""
    out = subprocess.run(
        [sys.executable, "-c", LEAN_DRIVER, str(config(tmp_path, tiny_dir, steps=3)), str(tmp_path / "runs")],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert out.returncode == 0, out.stderr
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["status"] == "done" and seen["torch"] is False
    daemons = seen["daemons"]
    assert any("raylet" in line for line in daemons) and any("gcs_server" in line for line in daemons), daemons
    idle = [line for line in daemons if any(f"/{name}.py" in line for name in ("dashboard", "monitor", "log_monitor"))]
    assert idle == []


DASHBOARD_RUN = """
import asyncio, faulthandler, json, sys
from embopt_tui.dashboard.app import make_app

assert not faulthandler.is_enabled()  # as in a user's shell (pytest enables it, which hid this)
app = make_app(sys.argv[1], runs_dir=sys.argv[2], stable=True)

async def main():
    async with app.run_test(size=(120, 30)) as pilot:
        while app.engine_code is None:
            await pilot.pause(0.05)
    print(json.dumps({"code": app.engine_code, "status": str(app._status_text())}))

asyncio.run(main())
"""


def test_the_dashboard_starts_its_own_private_cluster(tmp_path, tiny_dir):
    """Under Textual, sys.stderr has no file descriptor, and ray.init's faulthandler.enable() on it failed the run."""
    runs = tmp_path / "runs"
    out = subprocess.run(
        [sys.executable, "-c", DASHBOARD_RUN, str(config(tmp_path, tiny_dir, steps=3)), str(runs)],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1])["code"] == 0, out.stdout
    assert [r["status"] for r in results(run_dir_of(runs))["experiments"]] == ["done", "done"]


def test_an_unreachable_address_is_one_line_exit_1_and_nothing_is_lost(tmp_path, tiny_dir):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    runs = tmp_path / "runs"
    path = config(tmp_path, tiny_dir, steps=3)
    out = subprocess.run(
        command("--runs-dir", str(runs), "--address", f"127.0.0.1:{port}", str(path)),
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    problem = [line for line in out.stdout.splitlines() if "cannot reach the Ray cluster" in line]
    assert len(problem) == 1 and problem[0].endswith(f"127.0.0.1:{port}: Connection refused"), out.stdout
    saved = results(run_dir_of(runs))
    assert saved["status"] == "failed"
    assert [r["status"] for r in saved["experiments"]] == ["pending", "pending"]  # --resume runs them
