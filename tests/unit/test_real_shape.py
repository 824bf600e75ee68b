"""benchmarks/real_shape.py --tiny: the real-shape benchmark's own code on CPU at tiny shapes, so it never rots.

Nothing timed is asserted: only that every case of every dtype runs to its end through the engine, with its
phases, memory and FLOPs accounted, and the side-by-side measurements made.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CASES = (
    "gradient cosine",
    "gradient decoder_ce",
    "snapping",
    "nearest",
    "cycle",
    "bank_search",
    "bank_swap",
    "token_swap cosine",
    "token_swap decoder_ce",
    "token_swap + fluency",
    "fluent_swap",
)


def run(tmp_path: Path, *args: str) -> tuple[str, dict]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EMBOPT_THREADS": "1", "OMP_NUM_THREADS": "1"}
    out = tmp_path / "real_shape.json"
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "real_shape.py"), "--tiny", "--json", str(out), *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout, json.loads(out.read_text())


def test_every_case_runs_in_both_dtypes_with_its_phases_memory_and_flops(tmp_path):
    stdout, report = run(tmp_path, "--compare-bank")
    assert "FAILED" not in stdout and "same mask: True" in stdout
    assert [entry["dtype"] for entry in report["cases"]] == ["float32", "bfloat16"]
    for entry in report["cases"]:
        assert [row["case"] for row in entry["cases"]] == list(CASES)
        assert entry["mask"]["same"] and entry["bank_batching"]["new"]["padded_tokens"] > 0
        assert [m["case"] for m in entry["memory_model"]] == list(CASES)
        for row in entry["cases"]:
            phases = row["phases"]
            assert row["failed"] == [] and row["steps"] >= 1 and row["peak_bytes"] > 0 and row["row_bytes"] > 0
            assert phases["decode"]["calls"] >= 1 and phases["encode"]["flops"] > 0
            if row["method"] in ("gradient", "bank_swap"):  # a gradient through the predictor, timed both ways
                assert phases["predict"]["flops"] > 0 and phases["predict backward"]["flops"] > 0
            if "decoder_ce" in row["objective"] and row["method"] == "gradient":
                assert 1 <= phases["decoder CE backward"]["calls"] < phases["decoder CE"]["calls"]  # the end: no grad
            if row["case"] in ("token_swap + fluency", "fluent_swap"):  # the fluency model's own phase
                assert phases["fluency"]["calls"] >= 1 and phases["fluency"]["flops"] > 0
            if row["method"] == "token_swap":
                assert phases["encode (soft) backward"]["flops"] > 0
    assert {(s["dtype"], s["rows"]) for s in report["sweep"]} == {
        (d, r) for d in ("float32", "bfloat16") for r in (8, 64)
    }


def test_the_old_decoding_and_the_new_run_side_by_side(tmp_path):
    stdout, report = run(tmp_path, "--compare-decode", "--dtypes", "float32")
    (entry,) = report["cases"]
    old, new = entry["cases"]
    assert (old["case"], new["case"]) == ("gradient cosine (legacy decoding)", "gradient cosine (new decoding)")
    assert old["phases"]["decode"]["calls"] > new["phases"]["decode"]["calls"]  # shared calls, spared rows
    assert f"{entry['decode_speedup']:.2f}x" in stdout
