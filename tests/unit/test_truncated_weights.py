"""A truncated or corrupt weights file fails in one line that names the file (issue 7, item 7).

Predictor weights here (the engine's loader, in process); card checkpoints in
tests/cli/test_truncated_cards.py (fairseq2 reads card folders once per process).
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
import torch

from engine import events as ev
from engine.models.predictor import PredictorError, load_predictor
from engine.run.runner import run_queue
from engine.spec import Experiment, Spec, Story


def truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.fixture
def predictor_copy(tmp_path: Path, tiny_dir: Path) -> Path:
    return Path(shutil.copytree(tiny_dir / "predictor", tmp_path / "predictor"))


@pytest.mark.parametrize("keep", [0.5, 0.0])
def test_truncated_safetensors_names_the_file(predictor_copy: Path, keep: float) -> None:
    weights = predictor_copy / "model.safetensors"
    truncate(weights, keep)
    with pytest.raises(PredictorError) as info:
        load_predictor(predictor_copy)
    message = str(info.value)
    assert message.startswith(f"{weights}: cannot read the weights (truncated or corrupt file?): ")
    assert "\n" not in message


@pytest.mark.parametrize("keep", [0.5, 0.05])
def test_truncated_pytorch_model_bin_names_the_file(predictor_copy: Path, keep: float) -> None:
    from safetensors.torch import load_file

    state = load_file(str(predictor_copy / "model.safetensors"))
    (predictor_copy / "model.safetensors").unlink()
    weights = predictor_copy / "pytorch_model.bin"
    torch.save({"model_state_dict": state}, weights)
    truncate(weights, keep)
    with pytest.raises(PredictorError) as info:
        load_predictor(predictor_copy)
    assert str(info.value).startswith(f"{weights}: cannot read the weights (truncated or corrupt file?): ")


def test_a_run_with_truncated_weights_fails_its_backend_naming_the_file(predictor_copy: Path, tiny_backend) -> None:
    truncate(predictor_copy / "model.safetensors")
    backend = dataclasses.replace(tiny_backend, predictor=str(predictor_copy))
    story = Story("s", ("Once upon a time, there was a little girl named Lily.", "She loved to play outside."))
    spec = Spec(Path("q.toml"), backend, {"s": story}, (Experiment("e", "I like cheese.", story="s", steps=1),))
    seen: list[ev.Event] = []
    assert run_queue(spec, seen.append).status == ev.FAILED
    (failed,) = [e for e in seen if isinstance(e, ev.BackendFailed)]
    assert failed.error.startswith(f"PredictorError: {predictor_copy / 'model.safetensors'}: cannot read the weights")
