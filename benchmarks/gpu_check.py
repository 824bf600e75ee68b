"""GPU check: the shipped queue at real SONAR / SONAR-LLM-900M shapes, batched vs one at a time.

Random-init models (no download, nothing trained: decodes are gibberish, shapes and
code paths are real): SONAR's ``basic`` text encoder and decoder (model_dim 1024,
24 layers, 16 heads, ffn 8192, vocabulary 256206) and a predictor shaped like
SONAR-LLM-900M. The seven experiments of ``experiments.toml`` run through the
engine's stable API (``run_queue`` with injected ``Models``) for each objective
(cosine, decoder_ce) and dtype (float32, bfloat16): once as one batch, then one
experiment per ``run_queue`` call (the one-at-a-time baseline, what the research
scripts did), side by side in one process. Per case it prints experiment-steps
per second and peak GPU memory (``torch.cuda.max_memory_allocated``, weights
included) of both, and their ratio. Nothing is asserted.

    python benchmarks/gpu_check.py [--steps N] [--objectives ...] [--dtypes ...]
    python benchmarks/gpu_check.py --tiny      # the same code on CPU at small shapes (the test suite runs this)

Not run on a GPU yet: it was written where none was available.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


@dataclasses.dataclass(frozen=True)
class Shape:
    label: str
    space: dict[str, Any]  # fields of sonar's `basic` encoder/decoder configs to change
    vocab_size: int
    llama_config: dict[str, Any]


def real_shape() -> Shape:
    from benchmarks.real_shape import PREDICTORS

    return Shape("SONAR basic + SONAR-LLM-900M shape", {}, 256206, PREDICTORS["900m"])


def tiny_shape() -> Shape:
    from engine.mini.models import llama_config
    from engine.mini.tiny import TINY

    space = {
        "model_dim": TINY.model_dim,
        "max_seq_len": TINY.max_seq_len,
        "num_encoder_layers": TINY.encoder_layers,
        "num_decoder_layers": TINY.decoder_layers,
        "num_encoder_attn_heads": TINY.heads,
        "num_decoder_attn_heads": TINY.heads,
        "ffn_inner_dim": TINY.ffn_dim,
    }
    return Shape("tiny (CPU)", space, 1024, llama_config(TINY))


def build_models(shape: Shape, backend: Any, device: Any, dtype: Any, sentences: list[str]) -> Any:
    import torch
    from fairseq2.data.tokenizers import VocabularyInfo
    from sonar.inference_pipelines.text import EmbeddingToTextModelPipeline, TextToEmbeddingModelPipeline
    from sonar.models.sonar_text import get_sonar_text_decoder_hub, get_sonar_text_encoder_hub

    from engine.mini.tiny import FoldingTokenizer
    from engine.mini.tokenizer import load_tokenizer, train_tokenizer
    from engine.models.predictor import PredictorConfig, SonarLLMPredictor
    from engine.models.space import EmbeddingSpace
    from engine.run.backend import Models

    start = time.perf_counter()
    path = Path(tempfile.mkdtemp(prefix="gpu-check-")) / "tokenizer.model"
    tokenizer = load_tokenizer(train_tokenizer(sentences * 4, path, vocab_size=120))
    small = tokenizer.vocab_info
    vocab = VocabularyInfo(shape.vocab_size, small.unk_idx, small.bos_idx, small.eos_idx, small.pad_idx)
    wide = FoldingTokenizer(tokenizer)  # a random decoder emits ids past the small tokenizer's: folded back
    torch.manual_seed(0)
    models = []
    for hub in (get_sonar_text_encoder_hub(), get_sonar_text_decoder_hub()):
        config = dataclasses.replace(
            hub.get_arch_config("basic"),
            **shape.space,
            vocab_info=vocab,
            emb_dropout_p=0.0,
            attention_dropout_p=0.0,
            activation_dropout_p=0.0,
        )
        models.append(hub.create_new_model(config, device=device, dtype=dtype).eval())
    encoder = TextToEmbeddingModelPipeline(encoder=models[0], tokenizer=wide, device=device, dtype=dtype)
    decoder = EmbeddingToTextModelPipeline(decoder=models[1], tokenizer=wide, device=device, dtype=dtype)
    space = EmbeddingSpace(encoder, decoder, wide, device, dtype)
    with torch.device(device):
        predictor = SonarLLMPredictor(PredictorConfig(dict(shape.llama_config), space.dim))
    predictor = predictor.to(dtype=dtype).eval().requires_grad_(False)
    return Models(backend, space, predictor, torch.zeros(0, device=device), time.perf_counter() - start)


@dataclasses.dataclass
class Measured:
    steps: int
    seconds: float
    peak: int | None  # bytes; None off CUDA

    @property
    def steps_per_s(self) -> float:
        return self.steps / self.seconds


def measure(specs: list[Any], models: Any, device: Any) -> Measured:
    """Run each spec's queue through the engine; experiment-steps over wall time, and the peak memory."""
    import torch

    from engine.run.runner import run_queue

    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    steps = 0
    start = time.perf_counter()
    for spec in specs:
        result = run_queue(spec, lambda event: None, models=models)
        bad = [r for r in result.experiments if r["status"] != "done"]
        if bad:
            raise SystemExit(f"{bad[0]['name']} {bad[0]['status']}: {bad[0].get('error')}")
        steps += sum(r["steps_done"] for r in result.experiments)
    if cuda:
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    return Measured(steps, seconds, torch.cuda.max_memory_allocated(device) if cuda else None)


def _gb(value: int | None) -> str:
    return "n/a" if value is None else f"{value / 1e9:.2f} GB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, help="steps per experiment (default 20; 2 with --tiny)")
    parser.add_argument("--objectives", nargs="+", default=["cosine", "decoder_ce"], choices=["cosine", "decoder_ce"])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"], choices=["float32", "bfloat16"])
    parser.add_argument("--tiny", action="store_true", help="small shapes on CPU (what the test suite runs)")
    args = parser.parse_args(argv)
    os.environ.setdefault("FAIRSEQ2_NO_PROGRESS", "1")
    import torch

    from engine.models.space import resolve_dtype
    from engine.spec import Objective, parse_spec

    if args.tiny:
        torch.set_num_threads(int(os.environ.get("EMBOPT_THREADS", "1")))
        device, shape, steps = torch.device("cpu"), tiny_shape(), args.steps or 2
    elif not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; --tiny runs the same code on CPU at small shapes", file=sys.stderr)
        return 2
    else:
        device, shape, steps = torch.device("cuda"), real_shape(), args.steps or 20
    config = REPO / "experiments.toml"
    spec = parse_spec(config.read_text(encoding="utf-8"), config)
    sentences = [s for story in spec.stories.values() for s in story.sentences]
    sentences += [e.init for e in spec.experiments]
    queue_text = f"{len(spec.experiments)} experiments of {config.name}, {steps} steps each"
    print(f"shapes: {shape.label}; device {device}; {queue_text}")
    print(f"{'case':<22} {'batched steps/s':>16} {'peak':>10} {'one-at-a-time steps/s':>22} {'peak':>10}  ratio")
    for dtype_name in args.dtypes:
        dtype = resolve_dtype(dtype_name)
        backend = dataclasses.replace(spec.backend, device=device.type, dtype=dtype_name)
        models = build_models(shape, backend, device, dtype, sentences)
        weights = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
        print(f"{dtype_name}: models built in {models.seconds:.1f}s, weights {_gb(weights)}")
        for objective in args.objectives:
            experiments = tuple(
                dataclasses.replace(e, steps=steps, objective=Objective(((objective, 1.0),))) for e in spec.experiments
            )
            queue = dataclasses.replace(spec, backend=backend, experiments=experiments)
            warm = dataclasses.replace(queue, experiments=tuple(dataclasses.replace(e, steps=1) for e in experiments))
            measure([warm], models, device)  # first-call allocations and lazy imports, timed by neither side
            batched = measure([queue], models, device)
            single = measure([dataclasses.replace(queue, experiments=(e,)) for e in experiments], models, device)
            ratio = batched.steps_per_s / single.steps_per_s
            print(
                f"{objective + ' ' + dtype_name:<22} {batched.steps_per_s:>16.1f} {_gb(batched.peak):>10} "
                f"{single.steps_per_s:>22.1f} {_gb(single.peak):>10}  ratio {ratio:.2f}"
            )
        del models
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
