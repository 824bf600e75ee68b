"""A seconds-long run of the training command: every model trains a few steps and is written loadable."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from engine.models.predictor import load_predictor

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("mini-quick")
    proc = subprocess.run(
        [sys.executable, "-m", "engine.mini.train", "--quick", "--threads", "1", "--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "autoencoder 12/12" in proc.stdout and "predictor 12/12" in proc.stdout
    return out


def test_writes_cards_tokenizer_checkpoints_and_predictor(quick_run: Path) -> None:
    names = {p.name for p in quick_run.iterdir()}
    assert {"embopt_mini.yaml", "tokenizer.model", "encoder.pt", "decoder.pt", "predictor", "training.json"} <= names
    card = (quick_run / "embopt_mini.yaml").read_text()
    for field in (
        "name: embopt_mini_encoder",
        "name: embopt_mini_decoder",
        "model_family: transformer_encoder",
        "model_family: transformer_decoder",
        "tokenizer_family: nllb",
        "checkpoint: encoder.pt",
    ):
        assert field in card


def test_both_models_learn(quick_run: Path) -> None:
    record = json.loads((quick_run / "training.json").read_text())
    for key in ("autoencoder_loss", "predictor_loss"):
        assert record[key]["last"] < record[key]["first"], key


def test_checkpoints_load_into_the_sonar_models(quick_run: Path) -> None:
    from engine.mini.models import create_decoder, create_encoder, encode_batch, pad_batch
    from engine.mini.tokenizer import load_tokenizer
    from engine.mini.train import QUICK_SIZES

    tokenizer = load_tokenizer(quick_run / "tokenizer.model")
    encoder = create_encoder(QUICK_SIZES, tokenizer.vocab_info)
    decoder = create_decoder(QUICK_SIZES, tokenizer.vocab_info)
    encoder.load_state_dict({k: v.float() for k, v in torch.load(quick_run / "encoder.pt", weights_only=True).items()})
    decoder.load_state_dict({k: v.float() for k, v in torch.load(quick_run / "decoder.pt", weights_only=True).items()})
    ids, lens = pad_batch([tokenizer.create_encoder(lang="eng_Latn", mode="source")("I like cheese.")], 0)
    with torch.no_grad():
        vector = encode_batch(encoder.eval(), ids, lens)
    assert vector.shape == (1, QUICK_SIZES.model_dim)
    assert 0.1 < float(vector.norm()) < 0.4  # the SONAR scale is folded into the weights
    predictor = load_predictor(quick_run / "predictor")
    assert predictor(torch.zeros(1, 2, QUICK_SIZES.model_dim)).shape == (1, 2, QUICK_SIZES.model_dim)


def test_training_is_deterministic(quick_run: Path, tmp_path: Path) -> None:
    from engine.mini.train import QUICK, QUICK_SIZES, train_all

    train_all(tmp_path, 1234, QUICK_SIZES, QUICK, threads=1, log=lambda msg: None)
    assert (tmp_path / "tokenizer.model").read_bytes() == (quick_run / "tokenizer.model").read_bytes()
    for name in ("encoder.pt", "decoder.pt"):
        a = torch.load(tmp_path / name, weights_only=True)
        b = torch.load(quick_run / name, weights_only=True)
        assert all(torch.equal(a[k], b[k]) for k in a), name
    assert (tmp_path / "predictor" / "model.safetensors").read_bytes() == (
        quick_run / "predictor" / "model.safetensors"
    ).read_bytes()
