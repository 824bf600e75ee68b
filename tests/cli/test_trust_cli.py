"""Trustworthy results through the real command: a failed load leaves the queue to resume, --check --deep lists
every missing model file, repeats group in report, a story the models do not know is flagged (subprocesses)."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import BACKEND, cli, events, only_run, results
from test_hub_cli import COMMIT, write_config


def test_a_load_failure_leaves_every_experiment_pending_and_resume_runs_them(hf_home, tiny_dir, tmp_path) -> None:
    """The hub id is not cached (offline): exit 1, one line, nothing failed; once it is cached, --resume runs all."""
    write_config(tmp_path, "owner/later")
    first = cli("--no-ui", "--runs-dir", "runs", "q.toml", cwd=tmp_path)
    assert first.returncode == 1 and "Traceback" not in first.stdout + first.stderr
    run_dir = only_run(tmp_path / "runs")
    saved = results(run_dir)
    assert saved["status"] == "failed" and "not in the Hugging Face cache" in saved["error"]
    assert [r["status"] for r in saved["experiments"]] == ["pending"]

    hf_home("owner/later", tiny_dir / "predictor", COMMIT)  # the cache is fixed
    again = cli("--no-ui", "--resume", str(run_dir), cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    saved = results(run_dir)
    assert saved["status"] == "done" and [r["status"] for r in saved["experiments"]] == ["done"]


SONAR = """[backend]
kind = "sonar"
predictor = "owner/not-here"

[stories.s]
sentences = ["A girl named Lily.", "She loved to play."]

[[experiments]]
name = "e"
init = "Hi."
"""


def test_check_deep_lists_every_missing_model_file_in_one_go(hf_home, tmp_path) -> None:
    (tmp_path / "sonar.toml").write_text(SONAR, encoding="utf-8")
    proc = cli("--check", "--deep", "sonar.toml", cwd=tmp_path, env={"FAIRSEQ2_CACHE_DIR": str(tmp_path / "f2")})
    assert proc.returncode == 1 and "Traceback" not in proc.stdout + proc.stderr
    missing = [line for line in proc.stdout.splitlines() if "MISSING" in line]
    assert [line.split()[1:3] for line in missing] == [
        ["encoder", "text_sonar_basic_encoder:"],
        ["decoder", "text_sonar_basic_decoder:"],
        ["tokenizer", "text_sonar_basic_encoder:"],
        ["predictor", "owner/not-here:"],
    ]
    assert f"not in the fairseq2 cache ({tmp_path / 'f2'})" in missing[0] and "about 3.1 GB" in missing[0]
    assert "ok       dimensions: encoder 1024, decoder 1024" in proc.stdout  # the configs agree; read, not loaded
    error = proc.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("embopt-tui: error: not ready to run: encoder text_sonar_basic")
    assert "FAIRSEQ2_CACHE_DIR" in error[0] and "HF_HOME" in error[0]
    assert not (tmp_path / "f2").exists() and not (tmp_path / "runs").exists()  # nothing downloaded, nothing made


def test_check_deep_on_the_embedded_default_finds_everything(tmp_path) -> None:
    proc = cli("--check", "--deep", str(Path(__file__).resolve().parents[2] / "experiments.toml"), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("\n  ok ") == 6 and "ok: every model file is here" in proc.stdout
    assert "ok       fluency model " in proc.stdout


def test_check_deep_goes_with_check(tmp_path) -> None:
    proc = cli("--deep", cwd=tmp_path)
    assert proc.returncode == 2 and "--deep goes with --check" in proc.stderr


REPEATS = (
    BACKEND
    + """
[stories.lily]
sentences = ["Once upon a time, there was a little girl named Lily.", "She loved to play outside with her toys."]

[stories.odd]
sentences = ["Quantum chromodynamics binds quarks.", "Gluons mediate the strong force."]

[defaults]
steps = 4
decode_every = 2

[[experiments]]
name = "noisy"
story = "lily"
init = "I like cheese."
repeat = 3
init_noise = 0.3

[[experiments]]
name = "odd"
story = "odd"
init = "I like cheese."
"""
)


def test_repeats_run_per_seed_and_report_groups_them(tmp_path) -> None:
    (tmp_path / "q.toml").write_text(REPEATS, encoding="utf-8")
    proc = cli("--no-ui", "--runs-dir", "runs", "q.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_dir = only_run(tmp_path / "runs")
    rows = results(run_dir)["experiments"]
    assert [(r["name"], r["seed"], r["repeat_of"]) for r in rows[:3]] == [
        ("noisy@0", 0, "noisy"),
        ("noisy@1", 1, "noisy"),
        ("noisy@2", 2, "noisy"),
    ]
    assert len({r["text_sim"] for r in rows[:3]} | {r["final_sim"] for r in rows[:3]}) > 1  # they differ

    grouped = cli("report", str(run_dir), "--group", "experiment", cwd=tmp_path)
    assert grouped.returncode == 0, grouped.stderr
    lines = grouped.stdout.splitlines()
    assert lines[0].split()[:3] == ["Story", "Experiment", "n"]
    noisy = next(line for line in lines if " noisy " in line)
    assert noisy.split()[2] == "3" and noisy.count("±") == 3
    as_json = json.loads(cli("report", str(run_dir), "--group", "method", "--format", "json", cwd=tmp_path).stdout)
    assert {(g["story"], g["method"], g["n"]) for g in as_json} == {("lily", "gradient", 3), ("odd", "gradient", 1)}

    # the story outside the embedded default's world was said once, with its figures; Lily was not
    warned = [line for line in proc.stdout.splitlines() if "come back from encode -> decode" in line]
    assert len(warned) == 1 and "story odd: only " in warned[0]
    checked = {e["story"]: e for e in events(run_dir) if e["type"] == "story_checked"}
    assert set(checked) == {"lily", "odd"} and checked["lily"]["exact"] == 2
