"""Predictors in the SONAR-LLM checkpoint layout.

A predictor directory holds ``config.json`` (``llama_config``, ``embed_dim``,
``add_begin``) and the weights as ``model.safetensors`` or
``pytorch_model.bin`` with keys ``llama_model.*``, ``forward_proj.linear.*``
and ``reverse_proj.linear.*``. The prediction for position t (the vector of
sentence t+1) is ``reverse_proj(llama(inputs_embeds=forward_proj(x)).hidden_states[-1])``.

Only the transformer body is used: SONAR-LLM checkpoints also carry a token
embedding table and LM head (128k x hidden for the 900M model) that a
sentence-vector predictor never reads, so they are skipped rather than loaded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
BEGIN_TEXT = "Begin of text."  # the sentence SONAR-LLM puts first when add_begin is set
# Keys of the full causal-LM checkpoint that a vector predictor has no use for.
_UNUSED_PREFIXES = ("llama_model.lm_head.", "llama_model.model.embed_tokens.")


class PredictorError(Exception):
    """A directory that is not a loadable SONAR-LLM checkpoint."""


@dataclass(frozen=True)
class PredictorConfig:
    llama_config: dict[str, Any]
    embed_dim: int
    add_begin: bool = False

    @classmethod
    def read(cls, directory: Path) -> "PredictorConfig":
        path = directory / CONFIG_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PredictorError(f"{directory}: not a SONAR-LLM directory (no {CONFIG_FILE})") from None
        except json.JSONDecodeError as err:
            raise PredictorError(f"{path}:{err.lineno}: invalid JSON: {err.msg}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("llama_config"), dict):
            raise PredictorError(f"{path}: missing 'llama_config' object")
        embed_dim = raw.get("embed_dim", 1024)
        if not isinstance(embed_dim, int) or embed_dim < 1:
            raise PredictorError(f"{path}: 'embed_dim' must be a positive integer")
        return cls(dict(raw["llama_config"]), embed_dim, bool(raw.get("add_begin", False)))

    def write(self, directory: Path) -> None:
        data = {"llama_config": self.llama_config, "embed_dim": self.embed_dim, "add_begin": self.add_begin}
        (directory / CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


class Projector(nn.Module):
    def __init__(self, in_dim: int, out_dim: int):
        super().__init__()
        self.linear = nn.Linear(in_dim, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.linear(x)


class _Body(nn.Module):
    """Holds the Llama under ``model`` so state-dict keys match ``llama_model.model.*``."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model


class SonarLLMPredictor(nn.Module):
    """Maps sentence vectors [B, T, D] to next-sentence predictions [B, T, D]."""

    def __init__(self, config: PredictorConfig):
        super().__init__()
        from transformers import LlamaConfig, LlamaModel

        llama_kwargs = {k: v for k, v in config.llama_config.items() if k != "vocab_size"}
        # vocab_size=1: the token table is never read (inputs_embeds only).
        llama = LlamaModel(LlamaConfig(**llama_kwargs, vocab_size=1))
        self.config = config
        self.llama_model = _Body(llama)
        hidden = llama.config.hidden_size
        self.forward_proj = Projector(config.embed_dim, hidden)
        self.reverse_proj = Projector(hidden, config.embed_dim)

    def forward(self, x: Tensor) -> Tensor:
        out = self.llama_model.model(inputs_embeds=self.forward_proj(x), use_cache=False)
        return self.reverse_proj(out.last_hidden_state)

    def state_dict_for_save(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith(_UNUSED_PREFIXES)}


def is_predictor_dir(path: str | Path) -> bool:
    path = Path(path)
    return (path / CONFIG_FILE).is_file() and any((path / f).is_file() for f in WEIGHT_FILES)


def _read_weights(directory: Path) -> dict[str, Tensor]:
    for name in WEIGHT_FILES:
        path = directory / name
        if not path.is_file():
            continue
        if name.endswith(".safetensors"):
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
        # SONAR-LLM training scripts save {"model_state_dict": ...}.
        return state.get("model_state_dict", state) if isinstance(state, dict) else state
    raise PredictorError(f"{directory}: not a SONAR-LLM directory (no {' or '.join(WEIGHT_FILES)})")


def load_predictor(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> SonarLLMPredictor:
    """Load a SONAR-LLM checkpoint directory, frozen and in eval mode."""
    directory = Path(path)
    if not directory.is_dir():
        raise PredictorError(f"{directory}: predictor directory does not exist")
    config = PredictorConfig.read(directory)
    state = {k: v for k, v in _read_weights(directory).items() if not k.startswith(_UNUSED_PREFIXES)}
    try:
        model = SonarLLMPredictor(config)
    except (TypeError, ValueError) as err:
        raise PredictorError(f"{directory / CONFIG_FILE}: invalid llama_config: {err}") from None
    expected = model.state_dict_for_save()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        detail = f"missing {missing[:3]}" if missing else f"unexpected {unexpected[:3]}"
        raise PredictorError(f"{directory}: weights do not match config.json ({detail})")
    for key, tensor in state.items():
        if tensor.shape != expected[key].shape:
            raise PredictorError(
                f"{directory}: {key} has shape {tuple(tensor.shape)}, config.json implies {tuple(expected[key].shape)}"
            )
    model.load_state_dict(state, strict=False)
    model.requires_grad_(False)
    return model.to(device=device, dtype=dtype).eval()


def save_predictor(model: SonarLLMPredictor, path: str | Path) -> None:
    """Write ``config.json`` and ``model.safetensors`` (what :func:`load_predictor` reads)."""
    from safetensors.torch import save_file

    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    model.config.write(directory)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict_for_save().items()}
    save_file(state, str(directory / WEIGHT_FILES[0]))
