"""The methods as users run them: real subprocesses on the embedded default."""

from __future__ import annotations

from pathlib import Path

from test_cli import cli, only_run, results

QUEUE = """
[stories.lily]
sentences = ["Once upon a time, there was a little girl named Lily.", "She loved to play outside with her toys."]

[defaults]
story = "lily"
init = "I like cheese."

[[experiments]]
name = "search"
method = "bank_search"
bank = "bank.txt"

[[experiments]]
name = "tokens"
method = "token_swap"
steps = 3
search_width = 8
"""


def test_a_bank_run_headless_reports_the_bank_the_honest_columns_and_plots(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("EMBOPT_CACHE_DIR", str(tmp_path / "cache"))
    (tmp_path / "bank.txt").write_text("A cat sat.\nThere was a girl named Lily.\n\nA cat sat.\n", encoding="utf-8")
    (tmp_path / "q.toml").write_text(QUEUE, encoding="utf-8")
    first = cli("--no-ui", "q.toml", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "bank bank.txt: 2 sentences, encoded and cached" in first.stdout
    assert "Text Sim" in first.stdout and "Traceback" not in first.stderr
    again = cli("--no-ui", "--runs-dir", "again", "q.toml", cwd=tmp_path)
    assert "bank bank.txt: 2 sentences, read from the cache" in again.stdout
    data = results(only_run(tmp_path / "runs"))
    rows = {r["name"]: r for r in data["experiments"]}
    assert rows["search"]["text"] == "There was a girl named Lily." and rows["search"]["scored"] == 2
    assert rows["tokens"]["search_trace"] and rows["tokens"]["text_sim"] >= rows["tokens"]["init_sim"] - 1e-6
    plot = cli("report", str(only_run(tmp_path / "runs")), "--plot", cwd=tmp_path)
    assert plot.returncode == 0 and "exact scorings" in plot.stdout and "tokens" in plot.stdout


def test_method_config_errors_exit_2_in_one_line(tmp_path: Path) -> None:
    (tmp_path / "q.toml").write_text(QUEUE.replace('bank = "bank.txt"', 'bank = "missing.txt"'), encoding="utf-8")
    for args in (["--check", "q.toml"], ["--no-ui", "q.toml"]):
        proc = cli(*args, cwd=tmp_path)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        (line,) = proc.stderr.strip().splitlines()
        assert line.startswith("q.toml:") and ".bank: bank file" in line and "missing.txt does not exist" in line
    assert not (tmp_path / "runs").exists()  # nothing created
    unknown = QUEUE.replace('method = "bank_search"', 'method = "bank_serch"')
    (tmp_path / "q.toml").write_text(unknown, encoding="utf-8")
    proc = cli("--check", "q.toml", cwd=tmp_path)
    assert proc.returncode == 2 and "did you mean 'bank_search'?" in proc.stderr
