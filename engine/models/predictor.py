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

from pathlib import Path

import torch
from torch import Tensor, nn

from engine.models.predictor_dir import (
    BEGIN_TEXT,
    CONFIG_FILE,
    WEIGHT_FILES,
    PredictorConfig,
    PredictorError,
    is_predictor_dir,
    predictor_dir_problem,
    weights_file,
)
from engine.text import error_line

__all__ = [
    "BEGIN_TEXT",
    "CONFIG_FILE",
    "WEIGHT_FILES",
    "PredictorConfig",
    "PredictorError",
    "SonarLLMPredictor",
    "is_predictor_dir",
    "load_predictor",
    "save_predictor",
]

# Keys of the full causal-LM checkpoint that a vector predictor has no use for.
_UNUSED_PREFIXES = ("llama_model.lm_head.", "llama_model.model.embed_tokens.")


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
        # An explicit all-ones mask: without one, transformers 4.57 suspects packed sequences and builds
        # the causal mask with vmap (~8 ms a call, 7x the forward of a small model); with it, SDPA's is_causal.
        mask = torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        out = self.llama_model.model(inputs_embeds=self.forward_proj(x), attention_mask=mask, use_cache=False)
        return self.reverse_proj(out.last_hidden_state)

    def state_dict_for_save(self) -> dict[str, Tensor]:
        return {k: v for k, v in self.state_dict().items() if not k.startswith(_UNUSED_PREFIXES)}


def _read_weights(directory: Path) -> dict[str, Tensor]:
    path = weights_file(directory)
    if path is None:
        raise PredictorError(f"{directory}: not a SONAR-LLM directory (no {' or '.join(WEIGHT_FILES)})")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # the readers' own messages (a seek offset, "incomplete metadata") name no file
        problem = f"cannot read the weights (truncated or corrupt file?): {error_line(err)}"
        raise PredictorError(f"{path}: {problem}") from None
    # SONAR-LLM training scripts save {"model_state_dict": ...}.
    return state.get("model_state_dict", state) if isinstance(state, dict) else state


def load_predictor(
    path: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32
) -> SonarLLMPredictor:
    """Load a SONAR-LLM checkpoint directory, frozen and in eval mode."""
    directory = Path(path)
    problem = predictor_dir_problem(directory)
    if problem:
        raise PredictorError(f"{directory}: {problem}")
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
