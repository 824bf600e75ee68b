"""Measure the shipped embedded default and print its model card.

    python -m engine.mini.evaluate            # Markdown model card on stdout
    python -m engine.mini.evaluate --write    # ... and into engine/mini/MODEL_CARD.md
    python -m engine.mini.evaluate --json     # the same figures as one JSON object
    python -m engine.mini.evaluate --json --quick   # a small sample, seconds (tests)

Models load the way the product loads them: sonar-space pipelines over the
``embopt_mini_*`` fairseq2 cards, and the predictor directory through
:func:`engine.models.predictor.load_predictor`.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from engine.mini import ASSETS_DIR, DECODER_CARD, ENCODER_CARD, PREDICTOR_DIR
from engine.mini.corpus import (
    DEFAULT_SEED,
    INIT_SENTENCES,
    LILY_STORY,
    REFERENCE_SENTENCES,
    corpus_statistics,
    generate_corpus,
)
from engine.mini.models import TARGET_NORM
from engine.models.predictor import BEGIN_TEXT, load_predictor

LANG = "eng_Latn"
CARD_PATH = Path(__file__).resolve().parent / "MODEL_CARD.md"
NOISE_COSINE = 0.9


@dataclass(frozen=True)
class Sample:
    heldout_sentences: int
    noisy_sentences: int
    heldout_stories: int
    baseline_stories: int
    optimise_steps: int


FULL = Sample(
    heldout_sentences=100_000,
    noisy_sentences=400,
    heldout_stories=100_000,
    baseline_stories=100_000,
    optimise_steps=100,
)
QUICK = Sample(heldout_sentences=16, noisy_sentences=8, heldout_stories=12, baseline_stories=200, optimise_steps=10)


def _cards_registered() -> bool:
    from importlib.metadata import entry_points

    return any(ep.value.startswith("engine.") for ep in entry_points(group="fairseq2.extension"))


def load_pipelines() -> tuple[Any, Any]:
    """The public sonar pipelines over the mini cards (must run before any other fairseq2 use)."""
    if not _cards_registered():
        # Source checkout without the package's fairseq2 extension installed.
        os.environ.setdefault("FAIRSEQ2_USER_ASSET_DIR", str(ASSETS_DIR))
    from sonar.inference_pipelines.text import EmbeddingToTextModelPipeline, TextToEmbeddingModelPipeline

    encoder = TextToEmbeddingModelPipeline(encoder=ENCODER_CARD, tokenizer=ENCODER_CARD)
    decoder = EmbeddingToTextModelPipeline(decoder=DECODER_CARD, tokenizer=DECODER_CARD)
    return encoder, decoder


def _encode(pipeline: Any, sentences: Sequence[str]) -> Tensor:
    return pipeline.predict(list(sentences), source_lang=LANG, batch_size=256).clone()


def _decode(pipeline: Any, vectors: Tensor) -> list[str]:
    return pipeline.predict(vectors, target_lang=LANG, batch_size=128, beam_size=1, max_seq_len=64)


def _exact(pipeline: Any, vectors: Tensor, sentences: Sequence[str]) -> float:
    return sum(d == s for d, s in zip(_decode(pipeline, vectors), sentences)) / max(1, len(sentences))


def _at_cosine(vectors: Tensor, cosine: float, gen: torch.Generator) -> Tensor:
    """Rotate each vector by a random orthogonal direction to the given cosine, same norm."""
    noise = torch.randn(vectors.shape, generator=gen)
    unit = vectors / vectors.norm(dim=-1, keepdim=True)
    noise = noise - (noise * unit).sum(-1, keepdim=True) * unit
    noise = noise / noise.norm(dim=-1, keepdim=True)
    angle = math.acos(cosine)
    return vectors.norm(dim=-1, keepdim=True) * (math.cos(angle) * unit + math.sin(angle) * noise)


def _story_batch(stories: Sequence[Sequence[str]], table: dict[str, Tensor], begin: Tensor) -> tuple[Tensor, Tensor]:
    width = 1 + max(len(s) for s in stories)
    x = torch.zeros(len(stories), width, begin.shape[-1])
    mask = torch.zeros(len(stories), width, dtype=torch.bool)
    for i, story in enumerate(stories):
        x[i, 0] = begin
        x[i, 1 : 1 + len(story)] = torch.stack([table[s] for s in story])
        mask[i, : 1 + len(story)] = True
    return x, mask


def _cos(a: Tensor, b: Tensor) -> Tensor:
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def _optimise_first(
    predictor: Any, z0: Tensor, context: Tensor, target: Tensor, steps: int, lr: float
) -> tuple[float, float]:
    """The shipped queue's experiment in miniature: free s0, maximise cos(P(.)[s0 position], s1)."""
    z = z0.clone().requires_grad_(True)
    opt = torch.optim.Adam([z], lr=lr)
    radius = float(z0.norm())

    def sim() -> Tensor:
        x = torch.cat([context[:1], z.unsqueeze(0), context[2:]]).unsqueeze(0)
        return _cos(predictor(x)[0, 1], target)

    with torch.no_grad():
        init = float(sim())
    for _ in range(steps):
        loss = -sim()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            z.mul_(radius / z.norm())
    with torch.no_grad():
        final = float(sim())
    return init, final


def _bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def evaluate(sample: Sample, seed: int = DEFAULT_SEED) -> dict[str, Any]:
    start = time.monotonic()
    torch.manual_seed(seed)
    encoder, decoder = load_pipelines()
    predictor = load_predictor(PREDICTOR_DIR)
    rng = random.Random(seed)
    gen = torch.Generator().manual_seed(seed)
    corpus = generate_corpus(seed)
    train_set = set(corpus.train_sentences())

    # Reconstruction.
    heldout = corpus.heldout_sentences()
    heldout = heldout if len(heldout) <= sample.heldout_sentences else rng.sample(heldout, sample.heldout_sentences)
    heldout_vecs = _encode(encoder, heldout)
    decoded = _decode(decoder, heldout_vecs)
    hits = [d == s for d, s in zip(decoded, heldout)]
    unseen = [h for h, s in zip(hits, heldout) if s not in train_set]
    ref_vecs = _encode(encoder, REFERENCE_SENTENCES)
    ref_decoded = _decode(decoder, ref_vecs)
    noisy_idx = list(range(min(sample.noisy_sentences, len(heldout))))
    noisy = _at_cosine(heldout_vecs[noisy_idx], NOISE_COSINE, gen)
    noisy_exact = _exact(decoder, noisy, [heldout[i] for i in noisy_idx])

    # Prediction: held-out stories against the per-position mean of training stories.
    stories = [s.sentences for s in corpus.heldout]
    stories = stories if len(stories) <= sample.heldout_stories else rng.sample(stories, sample.heldout_stories)
    base_stories = [s.sentences for s in corpus.train]
    if len(base_stories) > sample.baseline_stories:
        base_stories = rng.sample(base_stories, sample.baseline_stories)
    needed = list(
        dict.fromkeys([BEGIN_TEXT, *LILY_STORY, *INIT_SENTENCES] + [x for s in stories + base_stories for x in s])
    )
    table = dict(zip(needed, _encode(encoder, needed)))
    begin = table[BEGIN_TEXT]
    x, mask = _story_batch(stories, table, begin)
    bx, bmask = _story_batch(base_stories, table, begin)
    width = max(x.shape[1], bx.shape[1])
    x, mask = (
        torch.nn.functional.pad(x, (0, 0, 0, width - x.shape[1])),
        torch.nn.functional.pad(mask, (0, width - mask.shape[1])),
    )
    bx, bmask = (
        torch.nn.functional.pad(bx, (0, 0, 0, width - bx.shape[1])),
        torch.nn.functional.pad(bmask, (0, width - bmask.shape[1])),
    )
    with torch.no_grad():
        pred = predictor(x)
    # Output t predicts input t+1; score sentences 1..n (index 2.. of the input), which have a story context.
    target, valid = x[:, 2:], mask[:, 2:]
    pred_cos = _cos(pred[:, 1:-1], target)[valid]
    position_mean = (bx * bmask.unsqueeze(-1)).sum(0) / bmask.sum(0).clamp(min=1).unsqueeze(-1)
    base_cos = _cos(position_mean[2:].expand_as(target), target)[valid]

    # The Lily story: oracle similarity, and optimisation of s0 from each init sentence.
    lily = torch.stack([begin] + [table[s] for s in LILY_STORY])
    with torch.no_grad():
        lily_pred = predictor(lily.unsqueeze(0))[0]
    oracle = float(_cos(lily_pred[1], lily[2]))
    lily_pred_text = _decode(decoder, lily_pred[1:2])[0]
    optimisation = {}
    for init in INIT_SENTENCES:
        a, b = _optimise_first(predictor, table[init], lily, lily[2], sample.optimise_steps, lr=0.02)
        optimisation[init] = {"init_sim": round(a, 4), "final_sim": round(b, 4)}

    all_norms = torch.cat([heldout_vecs, torch.stack(list(table.values()))]).norm(dim=-1)
    return {
        "heldout_exact_match": round(sum(hits) / len(hits), 4),
        "heldout_sentences": len(hits),
        "heldout_unseen_exact_match": round(sum(unseen) / len(unseen), 4) if unseen else None,
        "heldout_unseen_sentences": len(unseen),
        "reference_exact_match": sum(d == s for d, s in zip(ref_decoded, REFERENCE_SENTENCES))
        / len(REFERENCE_SENTENCES),
        "reference_failures": [f"{s!r} -> {d!r}" for d, s in zip(ref_decoded, REFERENCE_SENTENCES) if d != s],
        "noisy_exact_match_cos90": round(noisy_exact, 4),
        "noisy_sentences": len(noisy_idx),
        "predictor_heldout_cos": round(float(pred_cos.mean()), 4),
        "mean_vector_baseline_cos": round(float(base_cos.mean()), 4),
        "predicted_positions": int(valid.sum()),
        "oracle_sim_lily": round(oracle, 4),
        "lily_prediction_1": lily_pred_text,
        "optimisation_lily_s1": optimisation,
        "reference_norm": round(float(all_norms.mean()), 4),
        "target_norm": TARGET_NORM,
        "embedding_dim": int(begin.shape[-1]),
        "parameters": {
            "encoder": sum(p.numel() for p in encoder.model.parameters()),
            "decoder": sum(p.numel() for p in decoder.model.parameters()),
            "predictor": sum(p.numel() for p in predictor.parameters()),
        },
        "weights_bytes": _bytes(ASSETS_DIR),
        "files": {
            str(p.relative_to(ASSETS_DIR)): p.stat().st_size for p in sorted(ASSETS_DIR.rglob("*")) if p.is_file()
        },
        "corpus": corpus_statistics(corpus),
        "lm": _lm_figures(sample),
        "training": _training_record(),
        "quick": sample == QUICK,
        "seconds": round(time.monotonic() - start, 1),
    }


def _lm_figures(sample: Sample) -> dict[str, Any] | None:
    from engine.mini.lm import LM_DIR, TRAINING_FILE, evaluate_lm

    if not (LM_DIR / "config.json").is_file():
        return None
    figures = evaluate_lm(LM_DIR, sample=sample.heldout_sentences)
    figures["training"] = json.loads((LM_DIR / TRAINING_FILE).read_text(encoding="utf-8"))
    return figures


def _lm_card(lm: dict[str, Any] | None) -> str:
    if lm is None:
        return "\n## Fluency model\nNot trained: run `python -m engine.mini.lm`.\n"
    t, z = lm["training"], lm["training"]["sizes"]
    return f"""
## Fluency model `lm/`
A GPT-2 causal language model (hidden {z["hidden"]}, {z["layers"]} layers, {z["heads"]} heads, {lm["parameters"]:,} parameters)
with a word-level tokenizer ({lm["vocabulary"]} tokens), a standard transformers directory trained by
`python -m engine.mini.lm` ({t["schedule"]["steps"]} steps, {t["seconds"]} s on {t["threads"]} CPU thread) on every sentence of the
training stories. It scores fluency (`text_nll`, the `fluency` term, `fluent_swap`) through the same code that
loads any Hugging Face LM.

| metric | value | target |
|---|---:|---:|
| NLL per token, held-out sentences never seen in training ({lm["heldout_unseen_sentences"]}): mean / p50 / p95 | {lm["nll_mean"]:.3f} / {lm["nll_p50"]:.3f} / {lm["nll_p95"]:.3f} | |
| NLL of the worst token of each of those sentences: p95 | {lm["worst_token_nll_p95"]:.3f} | |
| NLL per token, training sentences (mean) | {lm["train_nll_mean"]:.3f} | |
| ranks a real sentence above its words shuffled ({lm["pairs"]} held-out sentences) | {lm["beats_shuffled"]:.4f} | >= 0.99 |
| ranks a real sentence above it with one word swapped for another corpus word | {lm["beats_one_word_swapped"]:.4f} | >= 0.99 |

*Fluent*, in the fluency study: NLL per token at most the p95 above ({lm["nll_p95"]:.3f}) and every word a corpus
word; *strictly fluent*: also no token's NLL above the worst-token p95 ({lm["worst_token_nll_p95"]:.3f}), since a mean
over a long sentence hides one garbled word.
"""


def _training_record() -> dict[str, Any] | None:
    path = ASSETS_DIR / "training.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def model_card(r: dict[str, Any]) -> str:
    c, p, t = r["corpus"], r["parameters"], r["training"] or {}
    sizes = t.get("sizes", {})
    opt = "\n".join(
        f"| {k} | {v['init_sim']:.3f} | {v['final_sim']:.3f} |" for k, v in r["optimisation_lily_s1"].items()
    )
    ref_fail = "".join(f"\n- {f}" for f in r["reference_failures"]) or " none"
    return f"""# Model card: the embedded default (embopt-tui mini)

A miniature SONAR-architecture text encoder/decoder and a SONAR-LLM-layout next-sentence predictor,
trained by `python -m engine.mini.train` on a generated TinyStories-like corpus. **It is not SONAR**: it knows
only the {c["vocabulary_words"]} words and {c["distinct_sentences"]} distinct sentences of its own corpus. It exists so that embopt-tui runs,
tests and demonstrates itself offline, through the same loading code as the real models.
Produced by `python -m engine.mini.evaluate --write`{" (quick sample: not the shipped figures)" if r["quick"] else ""}.

## Corpus (seed {t.get("seed", DEFAULT_SEED)})
| | |
|---|---:|
| stories (train / held-out) | {c["stories"]} ({c["train_stories"]} / {c["heldout_stories"]}) |
| sentences / distinct | {c["sentences"]} / {c["distinct_sentences"]} |
| distinct training sentences | {c["distinct_train_sentences"]} |
| held-out sentences never seen in training | {c["heldout_sentences_unseen_in_train"]} |
| vocabulary (words) | {c["vocabulary_words"]} |
| mean story length (sentences) | {c["mean_story_length"]} |

Six plot shapes (wanting something out of reach, a lost toy, sharing food, helping an animal, a quarrel,
rain on an outing). The Lily story is held out as a whole; each of its sentences, "I like cheese." and
"There was a boy named Tom." occur in training stories.

## Models
| model | parameters | shape |
|---|---:|---|
| encoder `embopt_mini_encoder` | {p["encoder"]:,} | SONAR text encoder, dim {sizes.get("model_dim")}, {sizes.get("encoder_layers")} layers, {sizes.get("heads")} heads, ffn {sizes.get("ffn_dim")}, mean pooling |
| decoder `embopt_mini_decoder` | {p["decoder"]:,} | SONAR text decoder, dim {sizes.get("model_dim")}, {sizes.get("decoder_layers")} layers, {sizes.get("heads")} heads, ffn {sizes.get("ffn_dim")} |
| predictor `predictor/` | {p["predictor"]:,} | Llama, hidden {sizes.get("predictor_hidden")}, {sizes.get("predictor_layers")} layers, {sizes.get("predictor_heads")} heads, ffn {sizes.get("predictor_ffn")}, add_begin |

Embedding dimension {r["embedding_dim"]}; tokenizer: sentencepiece BPE, NLLB layout. Weights stored as fp16;
all shipped files together: {r["weights_bytes"] / 1e6:.1f} MB. Training: {t.get("total_seconds", "?")} s on {t.get("threads", "?")} CPU threads
(autoencoder {t.get("autoencoder_seconds", "?")} s, predictor {t.get("predictor_seconds", "?")} s), torch {t.get("torch", "?")}.

## Figures
| metric | value | target |
|---|---:|---:|
| held-out exact match (greedy, {r["heldout_sentences"]} sentences of held-out stories) | {r["heldout_exact_match"]:.3f} | >= 0.90 |
| ... of those never seen in training ({r["heldout_unseen_sentences"]}) | {r["heldout_unseen_exact_match"] if r["heldout_unseen_exact_match"] is not None else "n/a"} | |
| reference exact match (8 Lily sentences + 2 init sentences) | {r["reference_exact_match"]:.3f} | 1.0 |
| exact match after noise to cosine 0.9 ({r["noisy_sentences"]} sentences) | {r["noisy_exact_match_cos90"]:.3f} | >= 0.75 |
| predictor held-out mean cosine ({r["predicted_positions"]} predictions of sentences 1..n) | {r["predictor_heldout_cos"]:.3f} | >= 0.75 |
| mean-vector-per-position baseline cosine | {r["mean_vector_baseline_cos"]:.3f} | predictor - 0.15 |
| oracle similarity, Lily sentence 1 given the true sentence 0 | {r["oracle_sim_lily"]:.3f} | |
| mean embedding norm (reference norm) | {r["reference_norm"]:.4f} | ~{r["target_norm"]} |

Reference sentences that did not come back exactly:{ref_fail}

The predictor's guess for Lily sentence 1, decoded: "{r["lily_prediction_1"]}"

## Optimising Lily sentence 0 towards sentence 1 ({"cosine, Adam lr 0.02, norm projection"})
| init text | init sim | final sim |
|---|---:|---:|
{opt}
{_lm_card(r["lm"])}"""


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.mini.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of the Markdown card")
    parser.add_argument("--quick", action="store_true", help="evaluate a small sample (seconds)")
    parser.add_argument("--write", action="store_true", help=f"also write the card to {CARD_PATH.name}")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if not (PREDICTOR_DIR / "config.json").is_file():
        print(f"{ASSETS_DIR}: no trained weights; run `python -m engine.mini.train`", file=sys.stderr)
        return 2
    result = evaluate(QUICK if args.quick else FULL)
    card = model_card(result)
    if args.write:
        CARD_PATH.write_text(card, encoding="utf-8")
    print(json.dumps(result, indent=2) if args.json else card)
    return 0


if __name__ == "__main__":
    sys.exit(main())
