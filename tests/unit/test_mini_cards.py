"""The shipped mini models load through fairseq2 cards and sonar's public pipelines, in a fresh process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from engine.mini import ASSETS_DIR
from engine.mini.corpus import REFERENCE_SENTENCES

REPO = Path(__file__).resolve().parents[2]

SCRIPT = r"""
import json, torch
torch.set_num_threads(1)
from sonar.inference_pipelines.text import EmbeddingToTextModelPipeline, TextToEmbeddingModelPipeline
from engine.mini import DECODER_CARD, ENCODER_CARD
from engine.mini.corpus import REFERENCE_SENTENCES
from engine.mini.models import decoder_nll, pad_batch

encoder = TextToEmbeddingModelPipeline(encoder=ENCODER_CARD, tokenizer=ENCODER_CARD)
decoder = EmbeddingToTextModelPipeline(decoder=DECODER_CARD, tokenizer=DECODER_CARD)
vectors = encoder.predict(list(REFERENCE_SENTENCES), source_lang="eng_Latn").clone()
texts = decoder.predict(vectors, target_lang="eng_Latn", beam_size=1, max_seq_len=64)

# Gradients of the decoder's teacher-forced token cross-entropy reach the input vector.
tokenizer = decoder.tokenizer
target = tokenizer.create_encoder(lang="eng_Latn", mode="target")
ids, lens = pad_batch([target(s) for s in REFERENCE_SENTENCES[:2]], tokenizer.vocab_info.pad_idx)
z = vectors[:2].clone().requires_grad_(True)
nll = decoder_nll(decoder.model.decoder, z, ids, lens, tokenizer.vocab_info.pad_idx)
nll.sum().backward()
print(json.dumps({
    "texts": texts, "norms": vectors.norm(dim=-1).tolist(), "dim": vectors.shape[1],
    "nll": nll.tolist(), "grad_norm": float(z.grad.norm()),
}))
"""


@pytest.fixture(scope="module")
def loaded() -> dict:
    assert (ASSETS_DIR / "embopt_mini.yaml").is_file()
    proc = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_reference_sentences_round_trip_exactly(loaded: dict) -> None:
    assert loaded["texts"] == list(REFERENCE_SENTENCES)


def test_embeddings_have_sonar_scale(loaded: dict) -> None:
    assert all(0.12 < n < 0.3 for n in loaded["norms"])
    assert loaded["dim"] >= 64


def test_decoder_cross_entropy_reaches_the_vector(loaded: dict) -> None:
    assert all(n < 0.5 for n in loaded["nll"])
    assert loaded["grad_norm"] > 0


def test_cards_sit_with_the_weights_they_name() -> None:
    card = (ASSETS_DIR / "embopt_mini.yaml").read_text()
    for name in ("encoder.pt", "decoder.pt", "tokenizer.model"):
        assert f": {name}" in card and (ASSETS_DIR / name).is_file()
    total = sum(p.stat().st_size for p in ASSETS_DIR.rglob("*") if p.is_file())
    assert total <= 20 * 1024 * 1024
