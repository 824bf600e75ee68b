"""`python -m engine.mini.evaluate --json --quick` reports every figure the issue names."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KEYS = (
    "heldout_exact_match",
    "reference_exact_match",
    "noisy_exact_match_cos90",
    "predictor_heldout_cos",
    "mean_vector_baseline_cos",
    "oracle_sim_lily",
    "reference_norm",
    "weights_bytes",
)


def test_quick_json_has_all_keys() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "engine.mini.evaluate", "--json", "--quick"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    for key in KEYS:
        assert isinstance(result[key], (int, float)), key
    assert 0.0 <= result["heldout_exact_match"] <= 1.0
    assert 0 < result["weights_bytes"] <= 20 * 1024 * 1024
    assert 0.1 < result["reference_norm"] < 0.3
    for run in result["optimisation_lily_s1"].values():
        assert run["final_sim"] > run["init_sim"]
    lm = result["lm"]
    assert 0 < lm["nll_p50"] <= lm["nll_p95"]
    assert lm["beats_shuffled"] >= 0.9 and lm["beats_one_word_swapped"] >= 0.9
