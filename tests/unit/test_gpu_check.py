"""benchmarks/gpu_check.py --tiny: the GPU check's own code, run on CPU so it never rots (nothing timed is asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_tiny_prints_every_case_with_its_ratio() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "EMBOPT_THREADS": "1", "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--tiny", "--steps", "2"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "7 experiments of experiments.toml, 2 steps each" in proc.stdout
    number = r"\d+\.\d"
    for case in ("cosine float32", "decoder_ce float32", "cosine bfloat16", "decoder_ce bfloat16"):
        row = re.compile(rf"^{case} +{number} +n/a +{number} +n/a +ratio {number}\d$", re.MULTILINE)
        assert row.search(proc.stdout), proc.stdout
