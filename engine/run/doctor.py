"""Whether a backend can load here, without downloading anything: ``embopt-tui --check --deep``.

For each card (encoder, decoder, tokenizer) it finds the checkpoint or tokenizer file the card names: a local
file, or a download fairseq2 keeps in its cache (``FAIRSEQ2_CACHE_DIR``, else ``$XDG_CACHE_HOME/fairseq2/assets``,
else ``~/.cache/fairseq2/assets``; one folder per URL, named by the first 24 hex digits of its SHA-1, as
fairseq2 0.8.1 lays it out). For the predictor and the fluency model: a directory, or a hub id in the Hugging Face cache
(``HF_HOME``, ``HF_HUB_CACHE``). Then the dimensions that must agree: the encoder's and the decoder's model
dimension and vocabulary, and the predictor's ``embed_dim``. Every piece is reported, so one run of it lists
everything missing. It reads cards and configs only: the first call imports fairseq2 and sonar (~10 s).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.models import hub
from engine.models.caches import FAIRSEQ2_FIX, HF_FIX, cached_download, fairseq2_cache_dir
from engine.models.predictor_dir import CONFIG_FILE, PredictorConfig, parse_hub_id, predictor_dir_problem
from engine.text import error_line

# Checkpoint sizes of the real SONAR cards, from their parameter counts (float32): what a first run downloads.
KNOWN_SIZES = {
    "text_sonar_basic_encoder": "about 3.1 GB (766 M parameters)",
    "text_sonar_basic_decoder": "about 3.5 GB (867 M parameters)",
    "text_sonar_finetuned_decoder": "about 3.5 GB (867 M parameters)",
}


@dataclass(frozen=True)
class Piece:
    """One thing the backend needs, and whether it is here."""

    what: str  # "encoder text_sonar_basic_encoder", "predictor raxtemur/sonar-llm-900m", "dimensions"
    ok: bool
    detail: str  # where it was found, or what is wrong
    fix: str = ""  # what makes it right, when it is not


def _file(role: str, card_name: str, field: str) -> Piece:
    """The card's ``field`` (checkpoint or tokenizer): a local file, or a download in the fairseq2 cache."""
    from fairseq2.assets import get_asset_store

    what = f"{role} {card_name}"
    try:
        uri = get_asset_store().retrieve_card(card_name).field(field).as_uri()
    except Exception as err:  # no such card, or a card without the field
        return Piece(what, False, f"no usable card: {error_line(err)}", "check the card name (FAIRSEQ2_USER_ASSET_DIR)")
    if uri.scheme == "file":
        path = uri.to_path()
        return Piece(what, path.exists(), f"{field} {path}" + ("" if path.exists() else " does not exist"))
    found = cached_download(str(uri))
    if found is not None:
        return Piece(what, True, f"{field} in the fairseq2 cache ({found})")
    size = f"; the download is {KNOWN_SIZES[card_name]}" if card_name in KNOWN_SIZES and field == "checkpoint" else ""
    where = f"not in the fairseq2 cache ({fairseq2_cache_dir()}): {uri}{size}"
    return Piece(what, False, where, FAIRSEQ2_FIX)


def _predictor(backend: Any) -> tuple[Piece, PredictorConfig | None]:
    value = backend.predictor
    if value is None:
        from engine.mini import PREDICTOR_DIR

        value = str(PREDICTOR_DIR)
    hub_id = None if os.path.isabs(value) else parse_hub_id(value)
    if hub_id is None:
        problem = predictor_dir_problem(Path(value))
        if problem:
            return Piece(f"predictor {value}", False, problem), None
        return Piece(f"predictor {value}", True, "directory"), PredictorConfig.read(Path(value))
    repo, revision = hub_id
    try:
        path = hub.cached_snapshot(repo, revision)
    except hub.PredictorError as err:
        return Piece(f"predictor {value}", False, str(err).split(": ", 1)[-1], HF_FIX), None
    return Piece(f"predictor {value}", True, f"in the Hugging Face cache ({path})"), PredictorConfig.read(path)


def _fluency(backend: Any) -> Piece | None:
    from engine.models.fluency import LM_LAYOUT, lm_dir_problem

    value = backend.fluency
    if value == "none" or (value is None and backend.kind != "mini"):
        return None
    if value is None:
        from engine.mini.lm import LM_DIR

        value = str(LM_DIR)
    hub_id = None if os.path.isabs(value) else parse_hub_id(value)
    if hub_id is None:
        problem = lm_dir_problem(Path(value))
        return Piece(f"fluency model {value}", problem is None, problem or "directory")
    try:
        path = hub.cached_snapshot(*hub_id, layout=LM_LAYOUT)
    except hub.PredictorError as err:
        return Piece(f"fluency model {value}", False, str(err).split(": ", 1)[-1], HF_FIX)
    return Piece(f"fluency model {value}", True, f"in the Hugging Face cache ({path})")


def _dimensions(backend: Any, predictor: PredictorConfig | None) -> Piece:
    from sonar.models.sonar_text import get_sonar_text_decoder_hub, get_sonar_text_encoder_hub

    try:
        encoder = get_sonar_text_encoder_hub().get_model_config(backend.encoder)
        decoder = get_sonar_text_decoder_hub().get_model_config(backend.decoder)
    except Exception as err:
        return Piece("dimensions", False, f"cannot read the model configs: {error_line(err)}")
    dims = {"encoder": encoder.model_dim, "decoder": decoder.model_dim}
    if predictor is not None:
        dims[f"predictor embed_dim ({CONFIG_FILE})"] = predictor.embed_dim
    vocab = {"encoder": encoder.vocab_info.size, "decoder": decoder.vocab_info.size}
    said = (
        ", ".join(f"{k} {v}" for k, v in dims.items())
        + "; vocabulary "
        + ", ".join(f"{k} {v}" for k, v in vocab.items())
    )
    agree = len(set(dims.values())) == 1 and len(set(vocab.values())) == 1
    return Piece("dimensions", agree, said if agree else f"do not agree: {said}")


def diagnose(backend: Any) -> list[Piece]:
    """Every piece ``backend`` (an engine.spec.Backend) needs, checked without downloading."""
    os.environ.setdefault("FAIRSEQ2_NO_PROGRESS", "1")
    pieces = [
        _file("encoder", backend.encoder, "checkpoint"),
        _file("decoder", backend.decoder, "checkpoint"),
        _file("tokenizer", backend.tokenizer, "tokenizer"),
    ]
    predictor, config = _predictor(backend)
    pieces.append(predictor)
    pieces.append(_dimensions(backend, config))
    fluency = _fluency(backend)
    if fluency is not None:
        pieces.append(fluency)
    return pieces
