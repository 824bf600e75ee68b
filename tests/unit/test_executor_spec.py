"""The [executor] table and --executor / --address: parsed up front, one line naming the key (no ray needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.spec import Executor, SpecError, parse_spec

REPO = Path(__file__).resolve().parents[2]
BASE = """\
[stories.lily]
sentences = ["One.", "Two."]

[[experiments]]
name = "a"
init = "Hi."
"""


def parse(executor: str):
    return parse_spec(BASE + "\n[executor]\n" + executor, "x.toml")


def test_inline_is_the_default_and_ray_takes_its_settings() -> None:
    assert parse_spec(BASE, "x.toml").executor == Executor()
    spec = parse('kind = "ray"\naddress = " auto "\nworkers = 4\ngpus_per_worker = 0.5\nmax_attempts = 2')
    assert spec.executor == Executor("ray", "auto", 4, 0.5, 2)
    assert parse('kind = "ray"\nworkers = 0').executor.workers == 0


@pytest.mark.parametrize(
    "body, message",
    [
        ("workers = -1", "x.toml:9: executor.workers: must be >= 0, got -1"),
        ("gpus_per_worker = 0", "x.toml:9: executor.gpus_per_worker: must be > 0, got 0"),
        ("gpus_per_worker = -0.5", "x.toml:9: executor.gpus_per_worker: must be > 0, got -0.5"),
        ("max_attempts = 0", "x.toml:9: executor.max_attempts: must be >= 1, got 0"),
        ('kind = "slurm"', 'x.toml:9: executor.kind: must be one of "inline", "ray"; got string "slurm"'),
        (
            "address = 6379",
            'x.toml:9: executor.address: must be a string ("", "auto" or "host:port"), got integer 6379',
        ),
        ("num_workers = 2", "x.toml:9: executor: unknown key 'num_workers' (did you mean 'workers'?)"),
    ],
)
def test_bad_executor_settings_name_the_key(body: str, message: str) -> None:
    with pytest.raises(SpecError) as err:
        parse(body)
    assert str(err.value) == message


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "embopt_tui", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_exits_2_on_a_bad_executor_key(tmp_path: Path) -> None:
    (tmp_path / "x.toml").write_text(BASE + '\n[executor]\nkind = "ray"\nworkers = -2\n')
    out = cli("--check", "x.toml", cwd=tmp_path)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["x.toml:10: executor.workers: must be >= 0, got -2"]


def test_address_does_not_combine_with_the_inline_executor(tmp_path: Path) -> None:
    out = cli("--no-ui", "--executor", "inline", "--address", "auto", cwd=tmp_path)
    assert out.returncode == 2
    assert "--address names a Ray cluster; it does not combine with --executor inline" in out.stderr
    assert "Traceback" not in out.stderr
