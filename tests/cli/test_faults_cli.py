"""Nothing lost, nothing hangs: the command under real faults (issue 17's fault-injection suite, the CI part).

Real subprocesses on the embedded default: kill -9 at several points of one run, each resumed; a disk that fills
mid-run (RLIMIT_FSIZE: the kernel fails the write past the limit, as a full disk does); a second process on a run
directory; damaged files; a bank cache that cannot be written or must stay private. Every resumed run must equal
the uninterrupted one, field for field. The 100-random-kill version is benchmarks/bench_kill.py.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
WAIT_S = 240  # a bound for a hung process on a loaded machine, not a speed check

QUEUE = """[backend]
kind = "mini"
device = "cpu"

[defaults]
steps = 30
decode_every = 10

[stories.lily]
sentences = ["Once upon a time, there was a little girl named Lily.", "She loved to play outside with her toys.",
             "One day, she saw a big tree in the sky."]
targets = [1, 2]

[stories.tom]
sentences = ["There was a boy named Tom.", "He loved to play with his ball.", "One day, he saw a big kite in the park."]

[[experiments]]
name = "a"
story = "lily"
init = "I like cheese."

[[experiments]]
name = "b"
story = "lily"
init = "There was a boy named Tom."
lr = 0.05
objective = {cosine = 1.0, cycle = 0.3}

[[experiments]]
name = "c"
story = "tom"
init = "I like cheese."
steps = 60

[[experiments]]
name = "d"
story = "tom"
init = "Begin of text."
steps = 90
objective = {cosine = 1.0, cycle = 0.3}
"""


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "EMBOPT_THREADS": "1", "OMP_NUM_THREADS": "1", **extra}


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "embopt_tui", *args]


def cli(*args: str, cwd: Path, file_limit: int | None = None, **extra: str) -> subprocess.CompletedProcess[str]:
    def limit() -> None:  # in the child: writes past the limit fail with EFBIG, like writes to a full disk
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_limit, resource.RLIM_INFINITY))

    return subprocess.run(
        command(*args),
        cwd=cwd,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=WAIT_S,
        preexec_fn=limit if file_limit else None,
    )


def write_queue(folder: Path, text: str = QUEUE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "queue.toml").write_text(text, encoding="utf-8")
    return folder / "queue.toml"


def only_run(runs: Path) -> Path:
    (run_dir,) = [d for d in runs.iterdir() if d.is_dir()]
    return run_dir


def rows(run_dir: Path) -> dict[str, dict[str, Any]]:
    data = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert data["status"] == "done", data["status"]
    return {r["name"]: {k: v for k, v in r.items() if k != "seconds"} for r in data["experiments"]}


def events(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for line in (run_dir / "events.jsonl").read_bytes().split(b"\n"):
        try:
            out.append(json.loads(line))
        except ValueError:
            pass
    return out


def kill_when(folder: Path, seen: Callable[[list[dict[str, Any]]], bool], *args: str) -> Path:
    """Start the command, SIGKILL it once its run directory's events satisfy ``seen``; returns the run directory."""
    proc = subprocess.Popen(command(*args), cwd=folder, env=env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            found = list((folder / "runs").glob("*/events.jsonl"))
            if found and seen(events(found[0].parent)):
                proc.kill()
                proc.wait()
                return found[0].parent
            time.sleep(0.02)
        raise AssertionError("the kill point never came")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("reference")
    write_queue(folder)
    proc = cli("--no-ui", "--runs-dir", "runs", "queue.toml", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    run_dir = only_run(folder / "runs")
    return run_dir, rows(run_dir)


def finished(names: set[str]) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda log: names <= {e["name"] for e in log if e["type"] == "experiment_finished"}


def stepped(name: str, step: int) -> Callable[[list[dict[str, Any]]], bool]:
    return lambda log: any(e["type"] == "step" and e["name"] == name and e["step"] >= step for e in log)


def test_kill_9_at_several_points_then_resume_equals_the_uninterrupted_run(tmp_path: Path, reference) -> None:
    write_queue(tmp_path)
    run_dir = kill_when(tmp_path, stepped("b", 3), "--no-ui", "--runs-dir", "runs", "queue.toml")  # mid first batch
    kept: set[str] = set()
    # Between the batches; then once c finished and d runs on, so the resume runs d alone (a batch of one).
    for point in (finished({"a", "b"}), stepped("d", 70)):
        before = {e["name"] for e in events(run_dir) if e["type"] == "experiment_finished"}
        assert kept <= before  # nothing that finished was lost by a kill
        kept = before
        kill_when(tmp_path, point, "--no-ui", "--resume", str(run_dir))
    resumed = cli("--no-ui", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert rows(run_dir) == reference[1]
    starts = [e["resumed"] for e in events(run_dir) if e["type"] == "run_started"]
    assert starts == [False, True, True, True]


def test_a_disk_that_fills_mid_run_stops_it_in_one_line_and_resume_completes_it(tmp_path: Path, reference) -> None:
    write_queue(tmp_path)
    full = cli("--no-ui", "--runs-dir", "runs", "queue.toml", cwd=tmp_path, file_limit=60_000)
    assert full.returncode == 1, full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in full.stderr, full.stderr
    run_dir = only_run(tmp_path / "runs")
    assert lines[0] == (
        f"embopt-tui: error: {run_dir / 'events.jsonl'}: cannot write: File too large; the run stopped,"
        f" what it saved is kept: --resume {run_dir} once it can be written"
    )
    statuses = {e["status"] for e in events(run_dir) if e["type"] == "experiment_finished"}
    assert statuses <= {"done"}  # the full disk failed no experiment
    resumed = cli("--no-ui", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert rows(run_dir) == reference[1]


def test_a_second_resume_on_a_run_directory_in_use_is_refused_naming_the_pid(tmp_path: Path, reference) -> None:
    from engine.rundir.store import RunStore

    holder = RunStore.open(reference[0])  # this process holds the directory, as a running resume would
    try:
        proc = cli("--no-ui", "--resume", str(reference[0]), cwd=tmp_path)
    finally:
        holder.close()
    assert proc.returncode == 2 and proc.stderr == (
        f"embopt-tui: error: {reference[0]}: in use by process {os.getpid()}"
        " (one process runs a run directory at a time)\n"
    )


def test_resume_on_damaged_files_warns_rebuilds_from_the_events_and_completes(tmp_path: Path, reference) -> None:
    import shutil

    run_dir = tmp_path / "run"
    shutil.copytree(reference[0], run_dir)
    lines = (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines()
    at = next(i for i, line in enumerate(lines) if '"type":"experiment_finished"' in line and '"name":"c"' in line)
    damaged = json.loads(lines[at])
    damaged["result"]["z"] = "not a vector"
    lines[at] = json.dumps(damaged)
    lines.insert(3, '{"type": "step", "name": ["x"]}')
    (run_dir / "events.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    data["experiments"][0]["final_sim"] = 0.999
    data["experiments"][1]["steps_done"] = "many"
    (run_dir / "results.json").write_text(json.dumps(data), encoding="utf-8")

    proc = cli("--no-ui", "--resume", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    warnings = proc.stderr.splitlines()
    assert any("events.jsonl: skipped 1 damaged line (4)" in w for w in warnings), warnings
    assert any("results.json: disagrees with events.jsonl; rebuilt from it" in w for w in warnings), warnings
    assert rows(run_dir) == reference[1]  # c ran again; a's hand-edited score is gone


BANK_QUEUE = """[backend]
kind = "mini"
device = "cpu"

[stories.lily]
sentences = ["Once upon a time, there was a little girl named Lily.", "She loved to play outside with her toys."]

[[experiments]]
name = "search"
init = "I like cheese."
method = "bank_search"
bank = "{bank}"
"""


def test_a_full_cache_directory_costs_the_cache_not_the_run(tmp_path: Path) -> None:
    write_queue(tmp_path, BANK_QUEUE.format(bank="corpus"))
    cache = tmp_path / "cache"
    proc = cli(
        "--no-ui", "--runs-dir", "runs", "queue.toml", cwd=tmp_path, file_limit=1 << 20, EMBOPT_CACHE_DIR=str(cache)
    )
    assert proc.returncode == 0, proc.stderr  # the corpus's 3 MB of embeddings do not fit under 1 MB files
    assert "bank corpus: 6,511 sentences, encoded, not cached: " in proc.stdout and "File too large" in proc.stdout
    assert not list(cache.glob("banks/*/manifest.json"))
    assert rows(only_run(tmp_path / "runs"))["search"]["status"] == "done"


def test_a_private_bank_stays_private_in_the_cache(tmp_path: Path) -> None:
    bank = tmp_path / "bank.txt"
    bank.write_text("".join(f"A private sentence, number {i}.\n" for i in range(200)), encoding="utf-8")
    bank.chmod(0o600)
    write_queue(tmp_path, BANK_QUEUE.format(bank="bank.txt"))
    cache = tmp_path / "cache"
    proc = cli("--no-ui", "--runs-dir", "runs", "queue.toml", cwd=tmp_path, EMBOPT_CACHE_DIR=str(cache))
    assert proc.returncode == 0, proc.stderr
    (entry,) = (cache / "banks").iterdir()
    for path in [entry, *entry.iterdir()]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path.name, oct(mode))
    run_dir = only_run(tmp_path / "runs")
    for path in [run_dir, *run_dir.iterdir()]:  # the run directory: the umask's modes (022 here), nothing wider
        assert stat.S_IMODE(path.stat().st_mode) & 0o002 == 0, path.name
