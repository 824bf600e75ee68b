"""The SONAR-LLM loader on the shipped mini predictor and on directories the test writes."""

from __future__ import annotations

import json

import pytest
import torch

from engine.mini import PREDICTOR_DIR
from engine.models.predictor import (
    PredictorConfig,
    PredictorError,
    SonarLLMPredictor,
    is_predictor_dir,
    load_predictor,
    save_predictor,
)

torch.set_num_threads(1)

TINY_LLAMA = {
    "hidden_size": 16,
    "intermediate_size": 32,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 2,
    "max_position_embeddings": 16,
}


def _tiny_dir(tmp_path, embed_dim: int = 8):
    torch.manual_seed(0)
    model = SonarLLMPredictor(PredictorConfig(TINY_LLAMA, embed_dim, add_begin=True))
    save_predictor(model, tmp_path)
    return model


def test_shipped_predictor_loads_in_sonar_llm_layout() -> None:
    assert is_predictor_dir(PREDICTOR_DIR)
    config = json.loads((PREDICTOR_DIR / "config.json").read_text())
    assert set(config) >= {"llama_config", "embed_dim", "add_begin"} and config["add_begin"] is True
    from safetensors import safe_open

    with safe_open(str(PREDICTOR_DIR / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    assert any(k.startswith("llama_model.") for k in keys)
    assert {"forward_proj.linear.weight", "reverse_proj.linear.weight"} <= keys
    model = load_predictor(PREDICTOR_DIR)
    x = torch.randn(2, 5, config["embed_dim"]) * 0.013
    out = model(x)
    assert out.shape == x.shape and out.dtype == torch.float32 and torch.isfinite(out).all()


def test_random_init_directory_round_trips(tmp_path) -> None:
    model = _tiny_dir(tmp_path)
    loaded = load_predictor(tmp_path)
    x = torch.randn(3, 4, 8)
    torch.testing.assert_close(loaded(x), model.eval()(x))


def test_pytorch_model_bin_with_model_state_dict(tmp_path) -> None:
    model = _tiny_dir(tmp_path)
    (tmp_path / "model.safetensors").unlink()
    torch.save({"model_state_dict": model.state_dict_for_save()}, tmp_path / "pytorch_model.bin")
    x = torch.randn(1, 3, 8)
    torch.testing.assert_close(load_predictor(tmp_path)(x), model.eval()(x))


@pytest.mark.parametrize(
    "breakage, message",
    [
        ("no_config", "no config.json"),
        ("bad_json", "invalid JSON"),
        ("no_weights", "no model.safetensors"),
        ("wrong_dim", "shape"),
        ("missing_dir", "does not exist"),
    ],
)
def test_broken_directories_raise_predictor_error(tmp_path, breakage: str, message: str) -> None:
    _tiny_dir(tmp_path)
    target = tmp_path
    if breakage == "no_config":
        (tmp_path / "config.json").unlink()
    elif breakage == "bad_json":
        (tmp_path / "config.json").write_text('{\n  "llama_config": ,\n}')
    elif breakage == "no_weights":
        (tmp_path / "model.safetensors").unlink()
    elif breakage == "wrong_dim":
        config = json.loads((tmp_path / "config.json").read_text())
        config["embed_dim"] = 12
        (tmp_path / "config.json").write_text(json.dumps(config))
    else:
        target = tmp_path / "nowhere"
    with pytest.raises(PredictorError, match=message):
        load_predictor(target)


def test_cosine_of_predictions_reaches_the_input_vector() -> None:
    model = load_predictor(PREDICTOR_DIR)
    dim = model.config.embed_dim
    torch.manual_seed(0)
    context = torch.randn(1, 3, dim) * 0.013
    z = (torch.randn(dim) * 0.013).requires_grad_(True)
    x = torch.cat([context[:, :1], z.view(1, 1, dim), context[:, 1:]], dim=1)
    target = torch.randn(dim)
    loss = -torch.nn.functional.cosine_similarity(model(x)[0, 1], target, dim=-1)
    loss.backward()
    assert z.grad is not None and z.grad.norm() > 0
    assert all(p.grad is None for p in model.parameters())
