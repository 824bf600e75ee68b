"""Retrain the embedded default from its seed: tokenizer, encoder + decoder, predictor.

    python -m engine.mini.train                 # the shipped weights (~15 min on 2 cores)
    python -m engine.mini.train --quick --out /tmp/mini   # seconds-long smoke run

Everything is seeded and single-process, so the same seed, thread count and
torch build give byte-identical tokenizer and weights (``training.json`` also
records timings). Output (``--out``, default the package's
``assets/``): ``embopt_mini.yaml`` (the fairseq2 cards), ``tokenizer.model``,
``encoder.pt``, ``decoder.pt``, ``predictor/`` and ``training.json``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine.mini import DECODER_CARD, ENCODER_CARD
from engine.mini.corpus import DEFAULT_SEED, Corpus, corpus_statistics, generate_corpus
from engine.mini.models import (
    TARGET_NORM,
    Sizes,
    create_decoder,
    create_encoder,
    decoder_override,
    encode_batch,
    encoder_override,
    fold_norm,
    llama_config,
    pad_batch,
)
from engine.mini.tokenizer import LANG, load_tokenizer, train_tokenizer
from engine.models.predictor import BEGIN_TEXT, PredictorConfig, SonarLLMPredictor, save_predictor

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
CARD_FILE = "embopt_mini.yaml"
ENCODER_FILE = "encoder.pt"
DECODER_FILE = "decoder.pt"
TOKENIZER_FILE = "tokenizer.model"
PREDICTOR_SUBDIR = "predictor"
TRAINING_FILE = "training.json"


@dataclass(frozen=True)
class Schedule:
    stories: int = 12_000
    ae_steps: int = 1_600
    ae_batch: int = 128
    ae_lr: float = 2e-3
    noise_max: float = 0.6  # noise norm / vector norm, drawn uniformly in [0, noise_max]; 0.48 is cosine 0.9
    pred_steps: int = 4_000
    pred_batch: int = 64
    pred_lr: float = 1e-3
    pred_input_noise: float = 0.05
    warmup: int = 100
    log_every: int = 100


QUICK = Schedule(stories=300, ae_steps=12, ae_batch=16, pred_steps=12, pred_batch=8, warmup=2, log_every=4)
QUICK_SIZES = Sizes(
    model_dim=32,
    encoder_layers=1,
    decoder_layers=1,
    heads=2,
    ffn_dim=64,
    predictor_hidden=32,
    predictor_layers=1,
    predictor_heads=2,
    predictor_ffn=64,
)

Log = Callable[[str], None]


def _lr_at(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * progress)))


def _length_batches(lengths: Sequence[int], batch: int, rng: random.Random) -> list[list[int]]:
    """Batches of similar length (little padding), in a shuffled order."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches = [order[i : i + batch] for i in range(0, len(order), batch)]
    rng.shuffle(batches)
    return batches


def _noisy(vectors: Tensor, noise_max: float, gen: torch.Generator) -> Tensor:
    n, dim = vectors.shape
    ratio = torch.rand(n, 1, generator=gen) * noise_max
    scale = vectors.detach().norm(dim=-1, keepdim=True) * ratio / math.sqrt(dim)
    return vectors + torch.randn(n, dim, generator=gen) * scale


def train_autoencoder(
    sentences: Sequence[str], tokenizer: Any, sizes: Sizes, sched: Schedule, seed: int, log: Log
) -> tuple[torch.nn.Module, torch.nn.Module, list[float]]:
    from fairseq2.nn import BatchLayout

    vi = tokenizer.vocab_info
    src_enc = tokenizer.create_encoder(lang=LANG, mode="source")
    tgt_enc = tokenizer.create_encoder(lang=LANG, mode="target")
    src = [src_enc(s) for s in sentences]
    tgt = [tgt_enc(s) for s in sentences]
    torch.manual_seed(seed)
    encoder = create_encoder(sizes, vi).train()
    decoder = create_decoder(sizes, vi).train()
    params = list(encoder.parameters()) + list(decoder.parameters())
    opt = torch.optim.AdamW(params, lr=sched.ae_lr, weight_decay=0.01, betas=(0.9, 0.98))
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    batches: list[list[int]] = []
    start = time.monotonic()
    run_loss = run_acc = 0.0
    losses: list[float] = []
    for step in range(sched.ae_steps):
        if not batches:
            batches = _length_batches([len(t) for t in tgt], sched.ae_batch, rng)
        idx = batches.pop()
        ids, lens = pad_batch([src[i] for i in idx], vi.pad_idx)
        tids, tlens = pad_batch([tgt[i] for i in idx], vi.pad_idx)
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, sched.ae_steps, sched.ae_lr, sched.warmup)
        vectors = _noisy(encode_batch(encoder, ids, lens), sched.noise_max, gen)
        src_v = vectors.unsqueeze(1)
        inp = tids[:, :-1]
        logits = decoder(src_v, BatchLayout.of(src_v), inp, BatchLayout.of(inp, [n - 1 for n in tlens]))
        target = tids[:, 1:]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), target, ignore_index=vi.pad_idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        with torch.no_grad():
            mask = target != vi.pad_idx
            acc = ((logits.argmax(-1) == target) | ~mask).all(1).float().mean().item()
        run_loss += loss.item()
        run_acc += acc
        losses.append(loss.item())
        if (step + 1) % sched.log_every == 0 or step + 1 == sched.ae_steps:
            k = (step % sched.log_every) + 1
            elapsed = time.monotonic() - start
            eta = elapsed / (step + 1) * (sched.ae_steps - step - 1)
            log(
                f"autoencoder {step + 1}/{sched.ae_steps}  loss {run_loss / k:.4f}  "
                f"noisy teacher-forced exact {run_acc / k:.3f}  {elapsed:.0f}s  eta {eta:.0f}s"
            )
            run_loss = run_acc = 0.0
    encoder.eval()
    decoder.eval()
    with torch.no_grad():
        norms = torch.cat(
            [
                encode_batch(encoder, *pad_batch(src[i : i + 512], vi.pad_idx)).norm(dim=-1)
                for i in range(0, len(src), 512)
            ]
        )
    scale = TARGET_NORM / norms.mean().item()
    fold_norm(encoder, decoder, scale)
    log(f"autoencoder done: mean norm {norms.mean().item():.3f} folded to {TARGET_NORM} (x{scale:.4f})")
    return encoder, decoder, losses


@torch.no_grad()
def embed_sentences(encoder: torch.nn.Module, tokenizer: Any, sentences: Sequence[str]) -> dict[str, Tensor]:
    src_enc = tokenizer.create_encoder(lang=LANG, mode="source")
    out: dict[str, Tensor] = {}
    items = list(dict.fromkeys(sentences))
    for i in range(0, len(items), 512):
        chunk = items[i : i + 512]
        vecs = encode_batch(encoder, *pad_batch([src_enc(s) for s in chunk], tokenizer.vocab_info.pad_idx))
        out.update(zip(chunk, vecs))
    return out


def story_tensor(
    stories: Sequence[Sequence[str]], vectors: dict[str, Tensor], begin: Tensor | None
) -> tuple[Tensor, Tensor]:
    """[N, T, D] story vectors (begin vector first when given) and a [N, T] validity mask."""
    rows = [([begin] if begin is not None else []) + [vectors[s] for s in story] for story in stories]
    width = max(len(r) for r in rows)
    dim = rows[0][0].shape[-1]
    x = torch.zeros(len(rows), width, dim)
    mask = torch.zeros(len(rows), width, dtype=torch.bool)
    for i, r in enumerate(rows):
        x[i, : len(r)] = torch.stack(r)
        mask[i, : len(r)] = True
    return x, mask


def prediction_loss(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """(1 - cosine) + MSE relative to the reference norm, over valid positions."""
    cos = torch.nn.functional.cosine_similarity(pred, target, dim=-1)
    mse = ((pred - target) ** 2).sum(-1) / TARGET_NORM**2
    per = (1 - cos) + mse
    return (per * mask).sum() / mask.sum()


def train_predictor(
    x: Tensor, mask: Tensor, sizes: Sizes, sched: Schedule, seed: int, log: Log
) -> tuple[SonarLLMPredictor, list[float]]:
    torch.manual_seed(seed + 1)
    model = SonarLLMPredictor(PredictorConfig(llama_config(sizes), x.shape[-1], add_begin=True)).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=sched.pred_lr, weight_decay=0.01, betas=(0.9, 0.98))
    gen = torch.Generator().manual_seed(seed + 1)
    start = time.monotonic()
    run = 0.0
    losses: list[float] = []
    for step in range(sched.pred_steps):
        idx = torch.randint(0, x.shape[0], (sched.pred_batch,), generator=gen)
        xb, mb = x[idx], mask[idx]
        for group in opt.param_groups:
            group["lr"] = _lr_at(step, sched.pred_steps, sched.pred_lr, sched.warmup)
        noisy = xb + torch.randn(xb.shape, generator=gen) * (
            sched.pred_input_noise * TARGET_NORM / math.sqrt(x.shape[-1])
        )
        pred = model(noisy)
        loss = prediction_loss(pred[:, :-1], xb[:, 1:], mb[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        run += loss.item()
        losses.append(loss.item())
        if (step + 1) % sched.log_every == 0 or step + 1 == sched.pred_steps:
            k = (step % sched.log_every) + 1
            elapsed = time.monotonic() - start
            eta = elapsed / (step + 1) * (sched.pred_steps - step - 1)
            log(f"predictor {step + 1}/{sched.pred_steps}  loss {run / k:.4f}  {elapsed:.0f}s  eta {eta:.0f}s")
            run = 0.0
    return model.eval(), losses


def write_cards(
    out: Path,
    sizes: Sizes,
    vocab_info: Any,
    names: tuple[str, str] = (ENCODER_CARD, DECODER_CARD),
    header: str = "# The embedded default (engine/mini): written by `python -m engine.mini.train`.\n",
    card_file: str = CARD_FILE,
) -> Path:
    """The fairseq2 cards of an encoder/decoder pair saved in ``out`` (also used for tiny test cards)."""
    tokenizer_config = {"_set_": {"default_lang": LANG, "langs": [LANG]}}

    def card(name: str, family: str, checkpoint: str, override: dict[str, Any]) -> str:
        # JSON flow mappings are YAML; one card per document.
        return "\n".join(
            [
                f"name: {name}",
                f"model_family: {family}",
                "model_arch: basic",
                f"model_config_override: {json.dumps(override)}",
                f"checkpoint: {checkpoint}",
                f"tokenizer: {TOKENIZER_FILE}",
                "tokenizer_family: nllb",
                f"tokenizer_config: {json.dumps(tokenizer_config)}",
            ]
        )

    text = (
        header
        + "# Paths are relative to this folder.\n"
        + card(names[0], "transformer_encoder", ENCODER_FILE, encoder_override(sizes, vocab_info))
        + "\n---\n"
        + card(names[1], "transformer_decoder", DECODER_FILE, decoder_override(sizes, vocab_info))
        + "\n"
    )
    path = out / card_file
    path.write_text(text, encoding="utf-8")
    return path


def _half_state(module: torch.nn.Module) -> dict[str, Tensor]:
    # fp16 storage halves the shipped size; loading casts back to the model's dtype.
    return {k: v.detach().to(torch.float16).contiguous() for k, v in module.state_dict().items()}


def _ends(losses: list[float]) -> dict[str, float]:
    """Mean loss of the first and the last tenth of training."""
    k = max(1, len(losses) // 10)
    return {"first": round(sum(losses[:k]) / k, 4), "last": round(sum(losses[-k:]) / k, 4)}


def train_all(out: Path, seed: int, sizes: Sizes, sched: Schedule, threads: int, log: Log) -> dict[str, Any]:
    torch.set_num_threads(threads)
    total_start = time.monotonic()
    out.mkdir(parents=True, exist_ok=True)
    corpus: Corpus = generate_corpus(seed, sched.stories)
    stats = corpus_statistics(corpus)
    log(f"corpus: {stats}")
    sentences = corpus.train_sentences() + [BEGIN_TEXT]
    train_tokenizer(sentences, out / TOKENIZER_FILE)
    tokenizer = load_tokenizer(out / TOKENIZER_FILE)
    log(f"tokenizer: {tokenizer.vocab_info.size} entries")

    ae_start = time.monotonic()
    encoder, decoder, ae_losses = train_autoencoder(sentences, tokenizer, sizes, sched, seed, log)
    ae_seconds = time.monotonic() - ae_start
    torch.save(_half_state(encoder), out / ENCODER_FILE)
    torch.save(_half_state(decoder), out / DECODER_FILE)
    write_cards(out, sizes, tokenizer.vocab_info)

    # The predictor learns on the vectors the shipped encoder produces (fp16 round trip included).
    encoder.load_state_dict({k: v.float() for k, v in _half_state(encoder).items()})
    vectors = embed_sentences(encoder, tokenizer, [s for st in corpus.train for s in st.sentences] + [BEGIN_TEXT])
    x, mask = story_tensor([st.sentences for st in corpus.train], vectors, vectors[BEGIN_TEXT])
    pred_start = time.monotonic()
    predictor, pred_losses = train_predictor(x, mask, sizes, sched, seed, log)
    pred_seconds = time.monotonic() - pred_start
    predictor.half()
    save_predictor(predictor, out / PREDICTOR_SUBDIR)

    report = {
        "seed": seed,
        "threads": threads,
        "sizes": asdict(sizes),
        "schedule": asdict(sched),
        "corpus": stats,
        "autoencoder_seconds": round(ae_seconds, 1),
        "predictor_seconds": round(pred_seconds, 1),
        "total_seconds": round(time.monotonic() - total_start, 1),
        "torch": torch.__version__,
        "autoencoder_loss": _ends(ae_losses),
        "predictor_loss": _ends(pred_losses),
    }
    (out / TRAINING_FILE).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    log(f"done in {report['total_seconds']:.0f}s -> {out}")
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.mini.train", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ASSETS_DIR, help="output folder (default: the shipped assets)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="tiny corpus, tiny models, a few steps (smoke test)")
    parser.add_argument("--ae-steps", type=int, help="override the autoencoder step count")
    parser.add_argument("--pred-steps", type=int, help="override the predictor step count")
    args = parser.parse_args(argv)
    sched, sizes = (QUICK, QUICK_SIZES) if args.quick else (Schedule(), Sizes())
    if args.ae_steps is not None:
        sched = replace(sched, ae_steps=args.ae_steps)
    if args.pred_steps is not None:
        sched = replace(sched, pred_steps=args.pred_steps)

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    if args.threads < 1 or sched.ae_steps < 1 or sched.pred_steps < 1:
        parser.error("--threads, --ae-steps and --pred-steps must be >= 1")
    try:
        train_all(args.out, args.seed, sizes, sched, args.threads, log)
    except OSError as err:
        print(f"{err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
