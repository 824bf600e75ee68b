"""The embedded default: a miniature SONAR space and SONAR-LLM-style predictor.

``assets/`` holds the fairseq2 cards (``embopt_mini.yaml``), the tokenizer, the
encoder and decoder checkpoints and the predictor directory, all written by
``python -m engine.mini.train``. fairseq2 finds the cards through
:data:`ASSETS_DIR` (it reads only the ``.yaml`` files there).
"""

from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
PREDICTOR_DIR = ASSETS_DIR / "predictor"
TOKENIZER_PATH = ASSETS_DIR / "tokenizer.model"
ENCODER_CARD = "embopt_mini_encoder"
DECODER_CARD = "embopt_mini_decoder"

__all__ = ["ASSETS_DIR", "PREDICTOR_DIR", "TOKENIZER_PATH", "ENCODER_CARD", "DECODER_CARD"]
