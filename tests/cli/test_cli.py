"""The ``embopt-tui`` command as users run it: real subprocesses on the embedded default (kind "mini").

The queue has two stories, so it runs as two batches: interrupting the second
batch leaves the first one finished, which is what ``--resume`` must keep.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "fairseq2", "sonar")
COMPARED = ("init_sim", "final_sim", "best_sim", "improvement", "oracle_sim", "roundtrip_sim")
REFERENCE_COLUMNS = ("Experiment", "Init Text", "LR", "Steps", "Init Sim", "Final Sim", "Improvement")
RESULT_FIELDS = (
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


BACKEND = """[backend]
kind = "mini"   # the embedded default, shipped with the package
device = "cpu"
"""

STORIES = """
[stories.lily]
sentences = ["Once upon a time, there was a little girl named Lily.", "She loved to play outside with her toys.",
             "One day, she saw a big tree in the sky."]
targets = [1, 2]

[stories.tom]
sentences = ["There was a boy named Tom.", "He loved to play with his ball.", "One day, he saw a big kite in the park."]
"""

QUEUE = """
[defaults]
lr = 0.02
steps = 30
decode_every = 10

[[experiments]]
name = "a"
story = "lily"
init = "I like cheese."

[[experiments]]
name = "b"
story = "tom"
init = "I like cheese."
lr = 0.05

[[experiments]]
name = "c"
story = "lily"
init = "There was a boy named Tom."
steps = 20

[[experiments]]
name = "d"  # long enough that a signal sent at its first step lands mid-run
story = "tom"
init = "Begin of text."
steps = 400
"""


def environment() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "EMBOPT_THREADS": "1", "OMP_NUM_THREADS": "1"}


def cli(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embopt_tui", *args],
        cwd=cwd,
        env={**environment(), **(env or {})},
        capture_output=True,
        text=True,
        timeout=300,
    )


def start(*args: str, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "embopt_tui", *args],
        cwd=cwd,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def write_queue(folder: Path, body: str = QUEUE) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "queue.toml"
    path.write_text(BACKEND + STORIES + body, encoding="utf-8")
    return path


def only_run(runs: Path) -> Path:
    dirs = [d for d in runs.iterdir() if d.is_dir()]
    assert len(dirs) == 1, dirs
    return dirs[0]


def results(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))


def events(run_dir: Path) -> list[dict[str, Any]]:
    out = []
    for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written right now
            pass
    return out


def wait_for(runs: Path, proc: subprocess.Popen[str], seen: Callable[[dict[str, Any]], bool]) -> Path:
    """Poll the run's events.jsonl (what a user's `tail -f` sees) until an event matches."""
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        files = list(runs.glob("*/events.jsonl"))
        if files and any(seen(e) for e in events(files[0].parent)):
            return files[0].parent
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("event never came")


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    """The queue run once, uninterrupted: the baseline every other run is compared with."""
    folder = tmp_path_factory.mktemp("reference")
    config = write_queue(folder)
    proc = cli("--no-ui", "--runs-dir", "runs", config.name, cwd=folder)
    return proc, only_run(folder / "runs")


# --- start-up -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("args", [["--help"], ["--check", "queue.toml"], ["report", "--help"]])
def test_start_up_leaves_torch_unimported(args: list[str], tmp_path: Path) -> None:
    write_queue(tmp_path)
    probe = (
        "import sys\nfrom embopt_tui.cli import main\n"
        f"try:\n    code = main({args!r})\nexcept SystemExit as e:\n    code = e.code\n"
        f"print('HEAVY', code, sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=environment(), capture_output=True, text=True
    )
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY 0 []", proc.stdout + proc.stderr
    if args == ["--help"]:
        for text in ("--no-ui", "--runs-dir", "--check", "--resume", "report RUN_DIR", "--version", "EMBOPT_THREADS"):
            assert text in proc.stdout


def test_console_script_and_version() -> None:
    script = Path(sys.executable).with_name("embopt-tui")
    assert script.exists(), "the project is not installed into this environment (run scripts/setup.sh)"
    proc = subprocess.run([str(script), "--version"], env=environment(), capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("embopt-tui ")


def test_check_ok(tmp_path: Path) -> None:
    write_queue(tmp_path)
    proc = cli("--check", "queue.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("ok: 4 experiments, 2 stories, backend mini on cpu")


def test_a_config_saved_with_a_bom_checks_ok(tmp_path: Path) -> None:
    """Notepad's UTF-8 starts with a byte-order mark; it used to read as `invalid TOML: Invalid statement`."""
    config = write_queue(tmp_path)
    config.write_bytes(b"\xef\xbb\xbf" + config.read_bytes())
    proc = cli("--check", config.name, cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.startswith("ok: 4 experiments"), proc.stderr


def test_steps_past_the_maximum_fail_the_check_naming_the_key(tmp_path: Path) -> None:
    config = write_queue(tmp_path, QUEUE.replace("steps = 400", "steps = 99999999999999999999"))
    proc = cli("--check", config.name, cwd=tmp_path)
    assert proc.returncode == 2 and "experiments[3] (d).steps: must be <= 1_000_000" in proc.stderr, proc.stderr


BAD = {
    "missing file": (None, r"^nope\.toml: no such file$"),
    "toml syntax": ("[defaults]\nlr = = 0.1\n", r"^queue\.toml:\d+: .+"),
    "unknown key": (
        '[defaults]\nlrr = 0.1\n[[experiments]]\nname = "x"\ninit = "Hi."\n',
        r"^queue\.toml:\d+: .*lrr.*'lr'",
    ),
    "lr not > 0": (
        '[[experiments]]\nname = "x"\ninit = "Hi."\nstory = "lily"\nlr = 0\n',
        r"^queue\.toml:\d+: experiments\[0\] \(x\)\.lr: ",
    ),
    "unknown story": (
        '[[experiments]]\nname = "x"\ninit = "Hi."\nstory = "lilly"\n',
        r"unknown story 'lilly' \(did you mean 'lily'\?\)",
    ),
}


@pytest.mark.parametrize("mode", ["--check", "--no-ui", "dashboard"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_is_one_line_and_exit_2(case: str, mode: str, tmp_path: Path) -> None:
    body, pattern = BAD[case]
    name = "nope.toml"
    if body is not None:
        name = write_queue(tmp_path, body).name
    flags = [] if mode == "dashboard" else [mode]
    proc = cli(*flags, "--runs-dir", "runs", name, cwd=tmp_path)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert __import__("re").search(pattern, lines[0]), lines[0]
    assert not (tmp_path / "runs").exists()  # nothing is created for a config that cannot run


@pytest.mark.parametrize(
    "args, message",
    [
        (["--no-ui", "--resume", "missing"], "embopt-tui: error: missing: no such run directory"),
        (["--no-ui", "--resume", "."], "not a run directory (no config.toml)"),
        (["report", "missing"], "embopt-tui: error: missing: no such run directory"),
        (["--resume", "x", "queue.toml"], "--resume takes the config from the run directory"),
        (["--no-such-flag"], "unrecognized arguments: --no-such-flag"),
        (["report", "x", "--format", "html"], "invalid choice: 'html'"),
    ],
)
def test_usage_errors_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2 and message in proc.stderr and "Traceback" not in proc.stderr, proc.stderr


# --- runs ---------------------------------------------------------------------------------------------------
def test_headless_run_writes_the_run_directory(reference: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    proc, run_dir = reference
    assert proc.returncode == 0, proc.stderr
    assert f"run directory: {run_dir}" in proc.stdout and "Best for story lily: " in proc.stdout
    assert run_dir.name.endswith("-queue")
    assert (run_dir / "config.toml").read_text() == (run_dir.parent.parent / "queue.toml").read_text()
    data = results(run_dir)
    assert data["status"] == "done" and data["finished"] and data["started"]
    assert data["config"] == str((run_dir.parent.parent / "queue.toml").resolve())
    assert [r["name"] for r in data["experiments"]] == ["a", "b", "c", "d"]
    for row in data["experiments"]:
        assert set(RESULT_FIELDS) <= set(row) and "z" not in row
        assert row["status"] == "done" and row["error"] is None
        assert row["steps_done"] == row["steps"] and len(row["trajectory"]) >= row["steps"]
        assert math.isclose(row["improvement"], row["final_sim"] - row["init_sim"], abs_tol=1e-6)
    # best per story, by the honest score: only experiments on the same story compete
    assert data["rank_by"] == "text_sim"
    by_story: dict[str, dict] = {}
    for row in data["experiments"]:
        if row["story"] not in by_story or row["text_sim"] > by_story[row["story"]]["text_sim"]:
            by_story[row["story"]] = row
    assert data["best"] == {story: row["name"] for story, row in by_story.items()}
    assert [r["name"] for r in data["experiments"] if r["best"]] == [
        r["name"] for r in data["experiments"] if r["name"] in data["best"].values()
    ]
    best = data["best"]["lily"]

    md = (run_dir / "results.md").read_text().splitlines()
    # the reference report's columns, then Story: the one setting that differs between these rows
    assert [c.strip() for c in md[0].strip("|").split("|")] == [
        *REFERENCE_COLUMNS,
        "Oracle",
        "Round-trip",
        "Text Sim",
        "Text NLL",
        "Oracle NLL",
        "Story",
        "Text",
        "Decoded z",
    ]
    assert any(line.startswith(f"| **{best}** |") for line in md)
    assert any(line.startswith(f"**Best** for story lily: `{best}`") for line in md)
    rows = list(csv.DictReader(io.StringIO((run_dir / "results.csv").read_text())))
    assert [r["name"] for r in rows] == ["a", "b", "c", "d"]

    from safetensors.numpy import load_file

    z = load_file(str(run_dir / "embeddings.safetensors"))
    assert sorted(z) == ["a", "b", "c", "d"] and len({v.shape for v in z.values()}) == 1
    kinds = [e["type"] for e in events(run_dir)]
    assert kinds[0] == "run_started" and kinds[-1] == "run_finished" and kinds.count("run_finished") == 1
    assert kinds.count("experiment_finished") == 4 and "step" in kinds and "decoded" in kinds


def test_report_in_every_format(reference: tuple[subprocess.CompletedProcess[str], Path]) -> None:
    _, run_dir = reference
    data = results(run_dir)
    table = cli("report", str(run_dir), cwd=run_dir)
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:2] == ["Experiment", "Init"]
    marked = [line.split()[1] for line in table.stdout.splitlines() if line.startswith("* ")]
    assert marked == [r["name"] for r in data["experiments"] if r["best"]] and len(marked) == 2
    md = cli("report", str(run_dir), "--format", "markdown", cwd=run_dir)
    assert md.stdout == (run_dir / "results.md").read_text()
    csv_out = cli("report", str(run_dir), "--format", "csv", cwd=run_dir)
    assert csv_out.stdout == (run_dir / "results.csv").read_text()
    js = cli("report", str(run_dir), "--format", "json", cwd=run_dir)
    assert json.loads(js.stdout) == data
    both = cli("report", str(run_dir), str(run_dir), "--format", "markdown", cwd=run_dir)
    assert both.stdout.startswith("| Run | Experiment |") and both.stdout.count(f"| {run_dir.name} | ") == 8


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
def test_interrupted_run_resumes_to_the_same_results(
    sig: signal.Signals, reference: tuple[subprocess.CompletedProcess[str], Path], tmp_path: Path
) -> None:
    config = write_queue(tmp_path)
    proc = start("--no-ui", "--runs-dir", "runs", config.name, cwd=tmp_path)
    run_dir = wait_for(tmp_path / "runs", proc, lambda e: e["type"] == "step" and e["name"] == "d")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    stopped = results(run_dir)
    statuses = {r["name"]: r["status"] for r in stopped["experiments"]}
    assert statuses["a"] == statuses["c"] == "done"  # the first batch finished before the signal
    if sig == signal.SIGTERM:
        assert proc.returncode == 130, err
        assert stopped["status"] == "interrupted" and statuses["b"] == statuses["d"] == "interrupted"
        d = next(r for r in stopped["experiments"] if r["name"] == "d")
        assert 1 <= d["steps_done"] < d["steps"] and d["trajectory"]  # saved with its trajectory so far
    else:
        assert proc.returncode == -signal.SIGKILL
        assert stopped["status"] == "running" and statuses["d"] == "running"  # what a dead process leaves

    resumed = cli("--no-ui", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert only_run(tmp_path / "runs") == run_dir  # completed in place, no new directory
    after, baseline = results(run_dir), results(reference[1])
    assert after["status"] == "done" and len(after["resumed"]) == 1 and after["best"] == baseline["best"]
    for got, want in zip(after["experiments"], baseline["experiments"], strict=True):
        assert got["name"] == want["name"] and got["status"] == "done"
        for key in COMPARED:
            assert got[key] == pytest.approx(want[key], abs=1e-5), (got["name"], key)
        assert got["decoded_z"] == want["decoded_z"] and got["steps_done"] == want["steps_done"]
    starts = [e for e in events(run_dir) if e["type"] == "run_started"]
    assert [e["resumed"] for e in starts] == [False, True]


@pytest.mark.parametrize(
    "signals", [(signal.SIGHUP,), (signal.SIGINT, signal.SIGINT)], ids=["sighup-stops", "second-ctrl-c-forces"]
)
def test_signal_while_models_load(signals: tuple[signal.Signals, ...], tmp_path: Path) -> None:
    config = write_queue(tmp_path)
    proc = start("--no-ui", "--runs-dir", "runs", config.name, cwd=tmp_path)
    run_dir = wait_for(tmp_path / "runs", proc, lambda e: e["type"] == "backend_loading")
    for sig in signals:  # the models take seconds to load; nothing runs meanwhile, so the first signal ends it
        proc.send_signal(sig)
        time.sleep(0.1)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert results(run_dir)["status"] == "interrupted"
    assert {r["status"] for r in results(run_dir)["experiments"]} == {"pending"}  # --resume runs them all
    assert f"{signals[0].name}: stopped while loading the models; nothing had run" in out
    assert f"run directory: {run_dir}" in out and "Traceback" not in err


def test_diverging_experiment_fails_alone_on_a_terminal(tmp_path: Path) -> None:
    """On a terminal: Rich progress and table; the diverging experiment fails, the other finishes, exit 1."""
    import pexpect

    body = """
[defaults]
story = "lily"
steps = 8
decode_every = 4

[[experiments]]
name = "fine"
init = "I like cheese."

[[experiments]]
name = "boom"
init = "I like cheese."
lr = 1e38
norm = "none"
"""
    config = write_queue(tmp_path, body)
    child = spawn_on_terminal(["--no-ui", "--runs-dir", "runs", config.name], tmp_path)
    child.expect(r"run directory: ")
    child.expect(pexpect.EOF)
    child.close()
    screen = child.logfile_read.getvalue()
    assert child.exitstatus == 1
    assert "results (failed)" in screen and "Traceback" not in screen
    run_dir = only_run(tmp_path / "runs")
    data = results(run_dir)
    rows = {r["name"]: r for r in data["experiments"]}
    assert data["status"] == "failed" and data["best"] == {"lily": "fine"}
    assert rows["fine"]["status"] == "done" and math.isfinite(rows["fine"]["final_sim"])
    assert rows["boom"]["status"] == "failed" and rows["boom"]["error"]


def test_bad_thread_setting_is_a_usage_error(tmp_path: Path) -> None:
    write_queue(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "embopt_tui", "--no-ui", "queue.toml"],
        cwd=tmp_path,
        env={**environment(), "EMBOPT_THREADS": "many"},
        capture_output=True,
        text=True,
    )
    assert (
        proc.returncode == 2
        and proc.stderr == "embopt-tui: error: EMBOPT_THREADS='many': expected a positive integer\n"
    )


def spawn_on_terminal(args: list[str], cwd: Path, *, size: tuple[int, int] = (40, 160)) -> Any:
    """The command in a pseudo-terminal of ``size`` (rows, columns); its output collects in ``child.logfile_read``."""
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "embopt_tui", *args],
        cwd=str(cwd),
        env={**environment(), "TERM": "xterm-256color", "COLUMNS": str(size[1]), "LINES": str(size[0])},
        dimensions=size,
        encoding="utf-8",
        timeout=180,
    )
    child.logfile_read = io.StringIO()
    return child


def test_second_ctrl_c_on_a_terminal_gives_the_terminal_back(tmp_path: Path) -> None:
    """The forced exit ends the bars' line and shows the cursor again: the shell prompt comes back usable."""
    import pexpect

    long = '[defaults]\nstory = "lily"\nsteps = 100000\n\n[[experiments]]\nname = "a"\ninit = "Hi."\n'
    config = write_queue(tmp_path, long)
    child = spawn_on_terminal(["--no-ui", "--runs-dir", "runs", config.name], tmp_path, size=(24, 80))
    child.expect(r"\d+\.\d steps/s")  # running: the first Ctrl+C stops after the current step
    child.kill(signal.SIGINT)
    child.expect("stopping")
    child.kill(signal.SIGINT)
    child.expect(pexpect.EOF)
    child.close()
    screen = child.logfile_read.getvalue()
    assert child.exitstatus == 130, screen
    assert "run directory:" not in screen  # the forced exit, not the orderly one
    assert "\x1b[?25l" in screen and "\x1b[?25h" in screen[screen.rindex("\x1b[?25l") :]  # the cursor shows again
    assert screen.replace("\x1b[?25h", "").endswith("\n")  # the prompt starts on its own line


# --- the dashboard without a terminal ------------------------------------------------------------------------
LONG = '[defaults]\nstory = "lily"\nsteps = 100000\n\n[[experiments]]\nname = "long"\ninit = "I like cheese."\n'


@pytest.mark.parametrize("missing", ["stdin", "stdout", "stderr"])
def test_dashboard_without_a_terminal_is_a_usage_error(missing: str, tmp_path: Path) -> None:
    """`embopt-tui q.toml > out < /dev/null` (nohup, cron): one line pointing to --no-ui, exit 2, nothing created.

    stdin carries the keys, stderr is where Textual draws, and a redirected stdout means a log was wanted.
    """
    import select

    config = write_queue(tmp_path)
    master, slave = os.openpty()
    streams: dict[str, Any] = {"stdin": slave, "stdout": slave, "stderr": slave}
    streams[missing] = subprocess.DEVNULL if missing == "stdin" else subprocess.PIPE
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "embopt_tui", "--runs-dir", "runs", config.name],
            cwd=tmp_path,
            env=environment(),
            text=True,
            timeout=120,
            **streams,
        )
        on_terminal = os.read(master, 65536).decode() if select.select([master], [], [], 0)[0] else ""
    finally:
        os.close(master)
        os.close(slave)
    assert proc.returncode == 2
    said = (proc.stderr if missing == "stderr" else on_terminal).replace("\r\n", "\n")
    assert said == (
        f"embopt-tui: error: the dashboard needs a terminal ({missing} is not one); use --no-ui for headless runs\n"
    )
    assert not (tmp_path / "runs").exists()


def test_dashboard_whose_terminal_closes_without_a_sighup_stops_and_saves(tmp_path: Path) -> None:
    """A pty whose master closes (no controlling terminal, so no SIGHUP): end of input is a hangup, exit 130."""
    import fcntl
    import select
    import struct
    import termios

    config = write_queue(tmp_path, LONG)
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "embopt_tui", "--runs-dir", "runs", config.name],
        cwd=tmp_path,
        env={**environment(), "TERM": "xterm-256color"},
        stdin=slave,
        stdout=slave,
        stderr=slave,
        start_new_session=True,  # the pty is not its controlling terminal: closing it sends no SIGHUP
    )
    os.close(slave)
    try:
        deadline = time.monotonic() + 240
        while not any(
            e["type"] == "step" for f in (tmp_path / "runs").glob("*/events.jsonl") for e in events(f.parent)
        ):
            assert time.monotonic() < deadline and proc.poll() is None, "the dashboard never started optimising"
            if select.select([master], [], [], 0.1)[0]:  # a terminal reads what the app draws
                os.read(master, 65536)
        os.close(master)
        assert proc.wait(timeout=120) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    saved = results(only_run(tmp_path / "runs"))
    assert saved["status"] == "interrupted" and saved["experiments"][0]["status"] == "interrupted"


# --- live edits and --resume ---------------------------------------------------------------------------------
LIVE = """
[defaults]
steps = 10

[[experiments]]
name = "a"
story = "lily"
init = "I like cheese."
steps = 100000

[[experiments]]
name = "b"
story = "tom"
init = "I like cheese."
lr = 0.02
"""
LIVE_EDIT = LIVE.replace("lr = 0.02", "lr = 0.3") + (
    '\n[[experiments]]\nname = "added"\nstory = "tom"\ninit = "Begin of text."\n'
)
RUNNING_EDIT = LIVE_EDIT.replace("steps = 100000", "steps = 12")  # a runs: this would rewrite what it runs with


def test_a_live_edit_in_the_dashboard_is_what_resume_continues(tmp_path: Path) -> None:
    """Add an experiment and change a pending lr while the dashboard runs, stop it, resume headless: the edit holds.
    An edit of the running experiment is refused whole: config.toml keeps saying what ran."""
    import pexpect

    config = write_queue(tmp_path, LIVE)
    child = spawn_on_terminal(["--runs-dir", "runs", config.name], tmp_path)

    def wait_event(kind: str, status: str | None = None) -> Path:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            child.expect([pexpect.TIMEOUT, pexpect.EOF], timeout=0.1)  # keep reading the screen, as a terminal does
            assert child.isalive(), child.logfile_read.getvalue()[-2000:]
            for found in (tmp_path / "runs").glob("*/events.jsonl"):
                if any(e["type"] == kind and status in (None, e.get("status")) for e in events(found.parent)):
                    return found.parent
        raise AssertionError(f"no {kind} event")

    def save(text: str, later: float) -> None:
        config.write_text(BACKEND + STORIES + text, encoding="utf-8")
        os.utime(config, (time.time() + later, time.time() + later))  # a new mtime even within the clock's resolution

    try:
        run_dir = wait_event("step")
        save(RUNNING_EDIT, 5)
        wait_event("config_rejected")
        assert (run_dir / "config.toml").read_text(encoding="utf-8") == BACKEND + STORIES + LIVE
        save(LIVE_EDIT, 10)
        wait_event("config_applied")
        child.send("s")  # skip the running experiment (the queue follows it), so the resume is short
        wait_event("experiment_finished", "skipped")
        child.kill(signal.SIGTERM)
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 130
    assert (run_dir / "config.toml").read_text(encoding="utf-8") == BACKEND + STORIES + LIVE_EDIT
    assert "lr = 0.02" in (run_dir / "config.started.toml").read_text(encoding="utf-8")
    rejected = [e for e in events(run_dir) if e["type"] == "config_rejected"]
    assert len(rejected) == 1 and "a is running: its steps (100000 -> 12) cannot change" in rejected[0]["error"]

    resumed = cli("--no-ui", "--resume", str(run_dir), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    rows = {r["name"]: r for r in results(run_dir)["experiments"]}
    assert list(rows) == ["a", "b", "added"]
    assert [r["status"] for r in rows.values()] == ["skipped", "done", "done"]
    assert rows["b"]["lr"] == 0.3 and rows["added"]["steps_done"] == 10


# --- what the headless table shows ---------------------------------------------------------------------------
def test_headless_at_80_columns_keeps_the_honest_score_and_the_oracle(tmp_path: Path) -> None:
    """Decoded z, Init Text and the lesser numbers (Final Sim too) give way first: Text Sim, its fluency (Text NLL),
    Text and the Oracle stay on screen."""
    import pexpect

    body = """
[defaults]
story = "lily"
steps = 5
init = "There was a boy named Tom, and he liked cheese."

[[experiments]]
name = "story_init_lower_lr"
lr = 0.005

[[experiments]]
name = "baseline"
"""
    config = write_queue(tmp_path, body)
    child = spawn_on_terminal(["--no-ui", "--runs-dir", "runs", config.name], tmp_path, size=(24, 80))
    child.expect("run directory: ")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    screen = child.logfile_read.getvalue()
    lines = [re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", line).rstrip("\r") for line in screen.splitlines()]
    at = next(i for i, line in enumerate(lines) if line.lstrip().startswith("Experiment"))
    header = lines[at]
    assert all(column in header for column in ("Oracle", "Text Sim", "Text NLL", "Text")), repr(header)
    assert "Decoded z" not in header and "Init Text" not in header
    assert all(len(line) <= 80 for line in lines[at : at + 4])  # fitted, not wrapped
    best = next(i for i, line in enumerate(lines) if line.startswith("Best"))
    # the table's last row, then the Best line once (its wrapped continuation used to come first, alone)
    assert lines[best - 1].lstrip("* ").split()[0] in ("story_init_lower_lr", "baseline"), lines[best - 2 : best + 2]


def test_skipped_experiments_are_their_own_status_headless_and_exit_0(tmp_path: Path) -> None:
    """A run where the dashboard skipped one, resumed headless: `skipped` is neither done nor failed."""
    from engine import events as ev
    from engine.results import result_row
    from engine.rundir.store import RunStore
    from engine.spec import load_spec

    body = '[defaults]\nsteps = 5\ninit = "Hi."\n\n[[experiments]]\nname = "a"\nstory = "lily"\n\n'
    body += '[[experiments]]\nname = "b"\nstory = "tom"\n\n[[experiments]]\nname = "c"\nstory = "lily"\nlr = 0.5\n'
    config = write_queue(tmp_path, body)
    spec = load_spec(config)
    store = RunStore.create(config, tmp_path / "runs")
    store.spec = spec
    store.record(ev.RunStarted(run_dir=str(store.run_dir), config_path=str(config), experiments=("a", "b", "c")))
    c = spec.experiments[2]
    store.record(ev.ExperimentFinished("c", ev.SKIPPED, result_row(c, spec.story_of(c), ev.SKIPPED)))
    store.record(ev.RunFinished(status=ev.INTERRUPTED, run_dir=str(store.run_dir)))
    store.close()

    proc = cli("--no-ui", "--resume", str(store.run_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr  # skipping is deliberate: nothing failed, nothing was interrupted
    assert "results (done): 2 done, 1 skipped" in proc.stdout
    table = proc.stdout[proc.stdout.index("  Experiment") :].splitlines()
    assert "Status" in table[0]
    statuses = {line[2:].split()[0]: line for line in table[2:5]}  # after the best mark
    assert "skipped" in statuses["c"] and "skipped" not in statuses["a"] and "done" in statuses["a"]
    rows = {r["name"]: r for r in results(store.run_dir)["experiments"]}
    assert [rows[n]["status"] for n in "abc"] == ["done", "done", "skipped"] and rows["c"]["best"] is False


def test_report_on_an_80_column_terminal_fits_the_table(
    reference: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    import pexpect

    _, run_dir = reference
    child = spawn_on_terminal(["report", str(run_dir)], run_dir, size=(24, 80))
    child.expect(pexpect.EOF)
    child.close()
    lines = child.logfile_read.getvalue().splitlines()
    assert child.exitstatus == 0 and "Decoded z" not in lines[0]
    assert all(column in lines[0] for column in ("Experiment", "Oracle", "Text Sim", "Text"))
    assert all(len(line) <= 80 for line in lines[:6])  # each row on one line: fitted, not wrapped
    piped = cli("report", str(run_dir), cwd=run_dir).stdout.splitlines()  # a pipe gets every column, whole
    assert "Decoded z" in piped[0]
    data = results(run_dir)
    assert all(row["text"] in "\n".join(piped) for row in data["experiments"])
