"""The embedded default's fluency model: a miniature causal language model of the mini corpus, trained here.

A standard Hugging Face model directory (``assets/lm/``: ``config.json``, ``model.safetensors``, tokenizer
files), a GPT-2-architecture model over a word-level tokenizer of the corpus (words and punctuation marks are its
tokens), so it loads through the very path any hub LM does (:mod:`engine.models.fluency`).

    python -m engine.mini.lm                  # rewrites engine/mini/assets/lm/ from seed 1234 (~5 min on 2 cores)
    python -m engine.mini.lm --quick --out /tmp/lm   # a seconds-long smoke run

Seeded and single-process: the same seed, thread count and torch build give the same weights.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from engine.mini import ASSETS_DIR
from engine.mini.corpus import DEFAULT_SEED, generate_corpus

LM_DIR = ASSETS_DIR / "lm"
TRAINING_FILE = "training.json"
SPECIALS = ("[PAD]", "[UNK]", "<s>", "</s>")


@dataclass(frozen=True)
class LMSizes:
    hidden: int = 128
    layers: int = 3
    heads: int = 4
    positions: int = 64


@dataclass(frozen=True)
class LMSchedule:
    stories: int = 12_000
    steps: int = 3000
    batch: int = 64
    lr: float = 3e-3
    warmup: int = 100


QUICK = (LMSizes(hidden=32, layers=1, heads=2), LMSchedule(stories=200, steps=20, batch=16, warmup=2))


def train_tokenizer(sentences: Sequence[str]) -> Any:
    """A word-level tokenizer of the corpus: each word and each punctuation mark a token, unknown ones [UNK]."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()  # \w+ and runs of punctuation
    core.decoder = decoders.WordPiece(prefix="##")  # joins tokens with spaces
    core.train_from_iterator(sentences, trainers.WordLevelTrainer(special_tokens=list(SPECIALS), min_frequency=1))
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>", eos_token="</s>"
    )


def create_lm(vocab_size: int, sizes: LMSizes, tokenizer: Any) -> Any:
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        vocab_size=vocab_size,
        n_positions=sizes.positions,
        n_embd=sizes.hidden,
        n_layer=sizes.layers,
        n_head=sizes.heads,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    return GPT2LMHeadModel(config)


def _batches(encoded: list[list[int]], batch: int, steps: int, rng: random.Random):
    order: list[int] = []
    for _ in range(steps):
        if len(order) < batch:
            order += rng.sample(range(len(encoded)), len(encoded))
        picked, order = order[:batch], order[batch:]
        yield [encoded[i] for i in picked]


def train_lm(out: Path, seed: int, sizes: LMSizes, sched: LMSchedule, threads: int, log: Any = print) -> dict:
    """Train the tokenizer and the model on the corpus's training stories (every sentence as often as it occurs);
    write the model directory to ``out``; returns what training.json records."""
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = random.Random(seed)
    start = time.perf_counter()
    corpus = generate_corpus(seed, sched.stories)
    occurrences = [s for story in corpus.train for s in story.sentences]
    tokenizer = train_tokenizer(corpus.train_sentences())
    bos, eos, pad = tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id
    encoded = [[bos, *tokenizer(s, add_special_tokens=False)["input_ids"], eos] for s in occurrences]
    encoded = [ids[: sizes.positions] for ids in encoded]
    model = create_lm(len(tokenizer), sizes, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=sched.lr, weight_decay=0.01)
    log(f"lm: {sum(p.numel() for p in model.parameters()):,} parameters, vocabulary {len(tokenizer)}")
    losses: list[float] = []
    for step, batch in enumerate(_batches(encoded, sched.batch, sched.steps, rng), start=1):
        width = max(map(len, batch))
        ids = torch.tensor([b + [pad] * (width - len(b)) for b in batch])
        mask = (ids != pad).long()
        labels = ids.masked_fill(mask == 0, -100)
        warm = min(1.0, step / max(1, sched.warmup))
        for group in optimizer.param_groups:  # warmup, then cosine decay to a tenth
            group["lr"] = sched.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / sched.steps)))
        loss = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % max(1, sched.steps // 20) == 0 or step == sched.steps:
            mean = sum(losses[-50:]) / len(losses[-50:])
            eta = (time.perf_counter() - start) / step * (sched.steps - step)
            log(f"lm step {step}/{sched.steps}: loss {mean:.3f} (ETA {eta:.0f}s)")
    out.mkdir(parents=True, exist_ok=True)
    model.eval()
    model.half().save_pretrained(out, safe_serialization=True)  # fp16 like the other mini weights; loads as asked
    for path in out.iterdir():
        path.chmod(0o644)  # safetensors writes 0600; the shipped assets are read by every user
    tokenizer.save_pretrained(out)
    record = {
        "seed": seed,
        "sizes": asdict(sizes),
        "schedule": asdict(sched),
        "threads": threads,
        "final_loss": sum(losses[-50:]) / len(losses[-50:]),
        "seconds": round(time.perf_counter() - start, 1),
        "sentences": len(occurrences),
    }
    (out / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log(f"lm: written to {out} in {record['seconds']:.0f}s")
    return record


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def evaluate_lm(directory: Path = LM_DIR, seed: int = DEFAULT_SEED, sample: int = 2000) -> dict[str, Any]:
    """The fluency model's quality on the corpus: held-out NLL per token of real sentences it never saw, and how
    often it ranks a real sentence above the same words shuffled, or above it with one word swapped for another
    corpus word. The fluency study calls a sentence fluent when its NLL is at most ``nll_p95`` and every word is a
    corpus word; strictly fluent when also its worst token's NLL is at most ``worst_token_nll_p95`` (a mean over a
    long sentence hides one garbled word: "there was a a little boy")."""
    import torch

    from engine.models.fluency import load_fluency

    rng = random.Random(seed)
    model = load_fluency(directory, str(directory), torch.device("cpu"), torch.float32)
    corpus = generate_corpus(seed, LMSchedule().stories)
    train = set(corpus.train_sentences())
    unseen = [s for s in corpus.heldout_sentences() if s not in train][:sample]
    vocabulary = sorted(corpus.vocabulary())
    per_token = model.token_nll(unseen)
    real = [sum(t) / len(t) for t in per_token]
    worst = [max(t) for t in per_token]
    # The ranking checks run on every distinct held-out sentence (most also occur in training stories): what
    # they measure is the model's grip on word order and word choice, which seen sentences test as well.
    ranked = list(dict.fromkeys(corpus.heldout_sentences()))[:sample]
    shuffled, swapped = [], []
    for sentence in ranked:
        words = sentence.split()
        if len(words) < 3:
            continue
        mixed = words[:]
        while mixed == words:
            rng.shuffle(mixed)
        at = rng.randrange(len(words))
        other = words[:]
        other[at] = rng.choice([w for w in vocabulary if w != words[at].strip(".,!?\"'").lower()])
        shuffled.append((sentence, " ".join(mixed)))
        swapped.append((sentence, " ".join(other)))
    by_text = dict(zip(ranked, model.nll(ranked)))

    def wins(pairs: list[tuple[str, str]]) -> float:
        scores = model.nll([b for _, b in pairs])
        return sum(by_text[a] < b for (a, _), b in zip(pairs, scores)) / max(1, len(pairs))

    return {
        "heldout_unseen_sentences": len(unseen),
        "nll_mean": sum(real) / len(real),
        "nll_p50": _percentile(real, 0.5),
        "nll_p95": _percentile(real, 0.95),
        "worst_token_nll_p95": _percentile(worst, 0.95),
        "train_nll_mean": sum(model.nll(sorted(train)[:sample])) / min(sample, len(train)),
        "beats_shuffled": wins(shuffled),
        "beats_one_word_swapped": wins(swapped),
        "pairs": len(shuffled),
        "parameters": sum(p.numel() for p in model.model.parameters()),
        "vocabulary": len(model.tokenizer),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m engine.mini.lm", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=LM_DIR, help="output folder (default: the shipped assets/lm)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--quick", action="store_true", help="a tiny corpus and model, a few steps (smoke test)")
    parser.add_argument("--steps", type=int, help="override the step count")
    args = parser.parse_args(argv)
    sizes, sched = QUICK if args.quick else (LMSizes(), LMSchedule())
    if args.steps is not None:
        if args.steps < 1:
            parser.error("--steps must be >= 1")
        sched = LMSchedule(**{**asdict(sched), "steps": args.steps})

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)

    try:
        train_lm(args.out, args.seed, sizes, sched, args.threads, log)
    except OSError as err:
        print(f"{err.filename or args.out}: {err.strerror or err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
