"""The fluency model and fluent_swap through the real command: a directory, a hub id from an offline Hugging Face
cache (laid out by the ``hf_home`` fixture from the shipped mini LM), a missing one, config errors, report --plot."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_cli import cli, only_run, results

from engine.mini.lm import LM_DIR

COMMIT = "fedcba9876543210fedcba9876543210fedcba98"
QUEUE = """[backend]
kind = "mini"
device = "cpu"
{fluency}
[stories.lily]
sentences = ["Once upon a time, there was a little girl named Lily.", "She loved to play outside with her toys."]

[[experiments]]
name = "fs"
{experiment}
"""
FLUENT_SWAP = {
    "method": '"fluent_swap"',
    "init": '"Once upon a time, there was a little girl named Mia."',
    "steps": "2",
    "decode_every": "2",
    "population": "2",
    "search_width": "4",
    "topk": "4",
}


def write(folder: Path, fluency: str | None = None, **changes: str | None) -> Path:
    """q.toml with one fluent_swap experiment; ``changes`` set its keys (TOML values) or drop them (None)."""
    line = "" if fluency is None else f'fluency = "{fluency}"\n'
    keys = {k: v for k, v in {**FLUENT_SWAP, **changes}.items() if v is not None}
    experiment = "\n".join(f"{k} = {v}" for k, v in keys.items())
    path = folder / "q.toml"
    path.write_text(QUEUE.format(fluency=line, experiment=experiment), encoding="utf-8")
    return path


def run(folder: Path) -> dict:
    proc = cli("--no-ui", "--runs-dir", "runs", "q.toml", cwd=folder)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return results(only_run(folder / "runs"))


@pytest.fixture(scope="module")
def by_default(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("default")
    write(folder)
    return run(folder)


def test_the_mini_backend_has_a_fluency_model_by_default(by_default: dict) -> None:
    (row,) = by_default["experiments"]
    assert by_default["backend"]["fluency"] == str(LM_DIR) and by_default["backend"]["fluency_revision"] is None
    assert row["text_nll"] > 0 and row["oracle_nll"] > 0 and len(row["front"]) >= 1


def test_a_fluency_model_by_directory_scores_as_the_default(by_default: dict, tmp_path: Path) -> None:
    shutil.copytree(LM_DIR, tmp_path / "my-lm")
    write(tmp_path, "my-lm")  # relative to the config's folder
    again = run(tmp_path)
    assert again["backend"]["fluency"] == str(tmp_path / "my-lm")
    (row,), (first,) = again["experiments"], by_default["experiments"]
    assert (row["text"], row["text_nll"], row["front"]) == (first["text"], first["text_nll"], first["front"])


def test_a_fluency_model_by_hub_id_loads_from_an_offline_cache(hf_home, by_default: dict, tmp_path: Path) -> None:
    snapshot = hf_home("owner/tiny-lm", LM_DIR, COMMIT)
    write(tmp_path, "owner/tiny-lm")
    proc = cli("--check", "q.toml", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    again = run(tmp_path)
    assert (again["backend"]["fluency"], again["backend"]["fluency_revision"]) == (str(snapshot), COMMIT)
    assert again["experiments"][0]["text_nll"] == by_default["experiments"][0]["text_nll"]


def test_a_missing_hub_id_fails_the_run_in_one_line_and_resume_finishes_it(hf_home, tmp_path: Path) -> None:
    write(tmp_path, "owner/absent-lm")
    proc = cli("--no-ui", "--runs-dir", "runs", "q.toml", cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output, output
    (failed,) = [line.split("] ", 1)[1] for line in output.splitlines() if "] backend failed:" in line]
    assert failed.startswith("backend failed: FluencyError: backend.fluency: owner/absent-lm: not in the Hugging Face")
    run_dir = only_run(tmp_path / "runs")
    assert [e["status"] for e in results(run_dir)["experiments"]] == ["pending"]
    # --check --deep says the same before anything runs.
    deep = cli("--check", "--deep", "q.toml", cwd=tmp_path)
    assert (
        deep.returncode == 1 and "MISSING  fluency model owner/absent-lm: not in the Hugging Face cache" in deep.stdout
    )
    hf_home("owner/absent-lm", LM_DIR, COMMIT)
    proc = cli("--no-ui", "--resume", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert [e["status"] for e in results(run_dir)["experiments"]] == ["done"]


GRADIENT = {"method": '"gradient"', "population": None, "search_width": None, "topk": None}


@pytest.mark.parametrize(
    "fluency, changes, message",
    [
        ("./no-such-lm", {}, 'backend.fluency: "./no-such-lm": does not exist, nor is it a Hugging Face hub id'),
        ("/nowhere/lm", {}, 'backend.fluency: "/nowhere/lm": does not exist'),
        ("none", {}, "(fs).method: fluent_swap reads texts through a fluency model: set [backend] fluency"),
        (None, {"weight_min": "5.0", "weight_max": "1.0"}, "(fs).weight_min: is above weight_max (5 > 1)"),
        (None, {"population": "0"}, "(fs).population: "),
        (None, {"search_width": "1.5"}, "(fs).search_width: "),
        (None, {"init": '"bank"'}, '(fs).init: init = "bank" starts from the bank'),
        (None, {**GRADIENT, "objective": "{cosine = 1.0, fluency = 0.1}"}, "(fs).objective: the fluency term scores"),
        (
            "none",
            {
                "method": '"token_swap"',
                **dict.fromkeys(("population", "search_width")),
                "objective": "{cosine = 1.0, repetition = 1.0}",
            },
            "(fs).objective: the fluency and repetition terms need a fluency model",
        ),
    ],  # fmt: skip
    ids=["relative", "absolute", "none", "weights", "population", "width", "bank-init", "gradient", "no-model"],
)
def test_config_errors_are_one_line_naming_the_key(
    fluency: str | None, changes: dict, message: str, tmp_path: Path
) -> None:
    write(tmp_path, fluency, **changes)
    for args in (["--check"], ["--no-ui", "--runs-dir", "runs"]):
        proc = cli(*args, "q.toml", cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("q.toml:") and message in line, line
        assert not (tmp_path / "runs").exists()


def test_report_shows_the_fluency_and_plots_the_front_with_the_oracle(tmp_path: Path) -> None:
    write(tmp_path)
    run(tmp_path)
    run_dir = only_run(tmp_path / "runs")
    proc = cli("report", "--plot", str(run_dir), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "lily: similarity against fluency (the front)" in proc.stdout
    assert "the true sentence (oracle)" in proc.stdout and "NLL per token" in proc.stdout
    table = cli("report", "--format", "markdown", str(run_dir), cwd=tmp_path)
    header = next(line for line in table.stdout.splitlines() if line.startswith("| Experiment"))
    assert "| Text NLL |" in header and "| Oracle NLL |" in header, header
