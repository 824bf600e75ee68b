"""Input that could hang the tool, fill its memory or drive the reader's terminal: refused in one line, or shown
escaped. Real subprocesses of the command on the embedded default; each ``--check`` here imports no torch.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LILY = ["Once upon a time, there was a little girl named Lily.", "She loved to play outside with her toys."]
HANG_GUARD_S = 60  # a refusal is immediate; this only turns a hang into a failure instead of a stalled suite
RAW_CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what must never reach a terminal raw


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0))


def env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO), "EMBOPT_THREADS": "1", "OMP_NUM_THREADS": "1", **extra}


def cli(*args: str, cwd: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "embopt_tui", *args],
        cwd=cwd,
        env=env(**extra),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S * 3,
    )


def config_text(*, experiment: str = 'name = "a"\ninit = "I like cheese."', extra: str = "", story=LILY) -> str:
    return (
        '[backend]\nkind = "mini"\ndevice = "cpu"\n'
        f"{extra}\n"
        f"[stories.lily]\nsentences = {json.dumps(story)}\n\n"
        f"[[experiments]]\n{experiment}\nsteps = 2\ndecode_every = 1\n"
    )


def predictor_dir(folder: Path, llama: dict) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"llama_config": llama, "embed_dim": 128}), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"")
    return folder


def one_line_exit_2(proc: subprocess.CompletedProcess[str], pattern: str) -> str:
    assert proc.returncode == 2, (proc.returncode, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert re.search(pattern, lines[0]), lines[0]
    return lines[0]


# --- what would never return --------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["--check", "--no-ui"])
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "directory"])
def test_a_config_that_is_not_a_regular_file_is_refused_at_once(kind: str, mode: str, tmp_path: Path) -> None:
    path = tmp_path / "queue.toml"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "dev-zero":
        path.symlink_to("/dev/zero")
    else:
        path.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "embopt_tui", mode, "--runs-dir", "runs", path.name],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    shown = {"fifo": "a named pipe", "dev-zero": "a character device", "directory": "a directory"}[kind]
    one_line_exit_2(proc, rf"^queue\.toml: not a regular file: it is {shown}")
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge"])
def test_a_predictor_config_json_that_is_not_a_small_regular_file_is_refused(kind: str, tmp_path: Path) -> None:
    folder = predictor_dir(tmp_path / "pred", {"hidden_size": 128})
    (folder / "config.json").unlink()
    if kind == "fifo":
        os.mkfifo(folder / "config.json")
    elif kind == "dev-zero":
        (folder / "config.json").symlink_to("/dev/zero")
    else:
        (folder / "config.json").write_text(" " * (2 << 20), encoding="utf-8")
    (tmp_path / "queue.toml").write_text(config_text(extra='predictor = "pred"'), encoding="utf-8")
    proc = cli("--check", "queue.toml", cwd=tmp_path)
    shown = {"fifo": "not a regular file", "dev-zero": "not a regular file", "huge": "more than the 1 MiB allowed"}
    one_line_exit_2(proc, rf"backend\.predictor: .*config\.json: .*{shown[kind]}")


@pytest.mark.parametrize("name", ["config.toml", "events.jsonl", "results.json"])
def test_a_run_directory_file_that_is_a_fifo_is_refused_by_resume_and_report(name: str, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "config.toml").write_text(config_text(), encoding="utf-8")
    (run_dir / name).unlink(missing_ok=True)
    os.mkfifo(run_dir / name)
    args = ("report", str(run_dir)) if name == "results.json" else ("--no-ui", "--resume", str(run_dir))
    proc = subprocess.run(
        [sys.executable, "-m", "embopt_tui", *args],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
    )
    one_line_exit_2(proc, rf"{name}: (cannot read: )?not a regular file: it is a named pipe")


def test_a_toml_nested_500_deep_is_one_line_not_a_recursion_error(tmp_path: Path) -> None:
    (tmp_path / "queue.toml").write_text(config_text() + "deep = " + "[" * 500 + "]" * 500 + "\n")
    one_line_exit_2(cli("--check", "queue.toml", cwd=tmp_path), r"^queue\.toml:\d+: arrays or tables nested 500 deep")


# --- what would run for ever or fill memory ------------------------------------------------------------------
BOUNDS = {
    "search_width 2**62": (
        'name = "a"\ninit = "I like cheese."\nmethod = "token_swap"\nsearch_width = 4611686018427387904',
        r"experiments\[0\] \(a\)\.search_width: must be <= 4096",
    ),
    "topk": ('name = "a"\ninit = "I like cheese."\nmethod = "token_swap"\ntopk = 100000', r"\.topk: must be <= 4096"),
    "n_replace": (
        'name = "a"\ninit = "I like cheese."\nmethod = "token_swap"\nn_replace = 65',
        r"\.n_replace: must be <=",
    ),
    "buffer_size": (
        'name = "a"\ninit = "I like cheese."\nmethod = "token_swap"\nbuffer_size = 5000',
        r"\.buffer_size: must be <= 1024",
    ),
    "top_k": (
        'name = "a"\ninit = "I like cheese."\nmethod = "bank_search"\nbank = "corpus"\ntop_k = 5000',
        r"\.top_k: must be <= 1000",
    ),
    "beam_size": ('name = "a"\ninit = "I like cheese."\nbeam_size = 65', r"\.beam_size: must be <= 64"),
    "steps": ('name = "a"\ninit = "I like cheese."\nsteps = 1000001', r"\.steps: must be <= 1_000_000"),
}


@pytest.mark.parametrize("case", sorted(BOUNDS))
def test_every_numeric_option_has_a_maximum_that_check_enforces(case: str, tmp_path: Path) -> None:
    experiment, pattern = BOUNDS[case]
    text = config_text(experiment=experiment)
    if case == "steps":
        text = text.replace("steps = 2\n", "")
    (tmp_path / "queue.toml").write_text(text, encoding="utf-8")
    one_line_exit_2(cli("--check", "queue.toml", cwd=tmp_path), pattern)


def test_workers_beyond_this_machines_cores_are_refused_for_a_private_cluster(tmp_path: Path) -> None:
    extra = f'[executor]\nkind = "ray"\nworkers = {cpu_cores() + 1}\n'
    (tmp_path / "queue.toml").write_text(config_text(extra=extra), encoding="utf-8")
    one_line_exit_2(cli("--check", "queue.toml", cwd=tmp_path), r"executor\.workers: .*at most one per core")


def test_thread_counts_beyond_this_machines_cores_are_refused(tmp_path: Path) -> None:
    (tmp_path / "queue.toml").write_text(config_text(), encoding="utf-8")
    proc = cli("--check", "queue.toml", cwd=tmp_path, EMBOPT_THREADS="100000")
    one_line_exit_2(proc, rf"^embopt-tui: error: EMBOPT_THREADS=100000: more threads than this machine's {cpu_cores()}")


def test_a_predictor_too_large_for_this_machine_is_refused_before_loading(tmp_path: Path) -> None:
    predictor_dir(tmp_path / "pred", {"hidden_size": 48000})
    (tmp_path / "queue.toml").write_text(config_text(extra='predictor = "pred"'), encoding="utf-8")
    for mode in ("--check", "--no-ui"):
        proc = cli(mode, "--runs-dir", "runs", "queue.toml", cwd=tmp_path)
        one_line_exit_2(proc, r"config\.json: a predictor of [\d,]+ weights needs about .* more than this machine's")
    assert not (tmp_path / "runs").exists()


def test_a_story_of_10000_sentences_and_a_queue_of_10001_experiments_are_refused(tmp_path: Path) -> None:
    long_story = [f"Sentence {i}." for i in range(10_000)]
    (tmp_path / "queue.toml").write_text(config_text(story=long_story), encoding="utf-8")
    one_line_exit_2(cli("--check", "queue.toml", cwd=tmp_path), r"stories\.lily\.sentences: 10,000 sentences, more")
    queue = config_text() + "".join(f'[[experiments]]\nname = "x{i}"\ninit = "Hi."\n' for i in range(10_000))
    (tmp_path / "queue.toml").write_text(queue, encoding="utf-8")
    one_line_exit_2(cli("--check", "queue.toml", cwd=tmp_path), r"experiments: 10,001 experiments, more than")


def test_a_bank_line_of_20_mb_is_refused_naming_the_line(tmp_path: Path) -> None:
    (tmp_path / "bank.txt").write_bytes(b"A short sentence.\n" + b"x" * (20 << 20) + b"\n")
    experiment = 'name = "a"\ninit = "I like cheese."\nmethod = "bank_search"\nbank = "bank.txt"'
    (tmp_path / "queue.toml").write_text(config_text(experiment=experiment), encoding="utf-8")
    one_line_exit_2(cli("--check", "queue.toml", cwd=tmp_path), r"bank\.txt:2: a line longer than 16,384 bytes")


# --- what would drive the terminal --------------------------------------------------------------------------
def test_a_config_name_with_a_newline_is_one_line_in_the_error(tmp_path: Path) -> None:
    (tmp_path / "bad\nname.toml").write_text("[defaults]\nlr = = 1\n", encoding="utf-8")
    line = one_line_exit_2(cli("--check", "bad\nname.toml", cwd=tmp_path), r"^bad\\nname\.toml:2: invalid TOML")
    assert "\n" not in line


HOSTILE_INIT = "I like \x1b[2J\x1b]0;PWNED\x07 cheese \u009b31m."
HOSTILE_SENTENCE = "She loved to \x1b[31mplay\x1b[0m outside \u2028 with her toys.\x7f"


def test_control_characters_are_escaped_in_every_face_and_file_that_prints_text(tmp_path: Path) -> None:
    """ESC/CSI/OSC, C1 and DEL in an init text and a story sentence: shown as visible escapes, never raw."""
    story = [LILY[0], HOSTILE_SENTENCE]
    experiment = f'name = "a"\ninit = {json.dumps(HOSTILE_INIT)}'
    (tmp_path / "queue.toml").write_text(config_text(experiment=experiment, story=story), encoding="utf-8")
    run = cli("--no-ui", "--runs-dir", "runs", "queue.toml", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    (run_dir,) = (tmp_path / "runs").iterdir()
    saved = json.loads((run_dir / "results.json").read_text(encoding="utf-8"))
    assert saved["experiments"][0]["init_text"] == HOSTILE_INIT  # the data keeps what was written
    outputs = {"headless stdout": run.stdout, "headless stderr": run.stderr}
    for name in ("results.md", "results.csv"):
        outputs[name] = (run_dir / name).read_text(encoding="utf-8")
    for fmt in ("table", "markdown", "csv", "json"):
        report = cli("report", str(run_dir), "--format", fmt, cwd=tmp_path)
        assert report.returncode == 0, report.stderr
        outputs[f"report --format {fmt}"] = report.stdout
    for where, text in outputs.items():
        assert not RAW_CONTROLS.search(text.replace("\r\n", "\n")), (where, RAW_CONTROLS.findall(text))
        assert "\u2028" not in text, where
    shown = "I like \\x1b[2J\\x1b]0;PWNED\\x07 cheese \\x9b31m."  # what `cat -v` would have shown as ^[[2J...
    for where in ("results.md", "report --format markdown", "report --format csv"):
        assert shown in outputs[where], where
    for where in ("headless stdout", "report --format table"):  # the table clips long text
        assert shown[:24] in outputs[where], where
