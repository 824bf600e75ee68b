"""A truncated card checkpoint (the encoder/decoder ``.pt`` a card points to) fails in one line naming the file.

fairseq2 reads card folders once per process, so each case is a real command in a
fresh process, its FAIRSEQ2_USER_ASSET_DIR a copy of the tiny cards with one file cut short.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from test_cli import cli
from test_hub_cli import write_config


@pytest.mark.parametrize(
    "card, file, keep", [("tiny_encoder", "encoder.pt", 0.5), ("tiny_decoder", "decoder.pt", 0.02)]
)
def test_a_truncated_card_checkpoint_is_named(
    tmp_path: Path, tiny_dir: Path, monkeypatch: pytest.MonkeyPatch, card: str, file: str, keep: float
) -> None:
    cards = Path(shutil.copytree(tiny_dir, tmp_path / "cards"))
    data = (cards / file).read_bytes()
    (cards / file).write_bytes(data[: int(len(data) * keep)])
    monkeypatch.setenv("FAIRSEQ2_USER_ASSET_DIR", str(cards))
    write_config(tmp_path, str(cards / "predictor"))
    proc = cli("--no-ui", "--runs-dir", "runs", "q.toml", cwd=tmp_path)
    output = proc.stdout + proc.stderr
    assert proc.returncode == 1 and "Traceback" not in output, output
    (failed,) = [line.split("] ", 1)[1] for line in output.splitlines() if "] backend failed:" in line]
    assert failed.startswith(
        f"backend failed: CheckpointError: {cards / file}: checkpoint of card {card} cannot be read"
        " (truncated or corrupt file?): "
    ), failed
