"""The fluency study: every method, the fluency term and fluent_swap on 8 stories the embedded corpus's generator
makes under a seed of this study's own (not the shipped stories), with a bank of the corpus minus their sentences.

    .venv/bin/python benchmarks/fluent_study.py                 # ~6 minutes on 2 cores; prints the tables
    .venv/bin/python benchmarks/fluent_study.py --optimize 1    # z in place of each story's second sentence
    .venv/bin/python benchmarks/fluent_study.py --quick         # 2 stories, 5 steps: the mechanics (tests)

A sentence *succeeds* when it is
(a) new: in neither the bank nor its story (the issue's test) and, more strictly, nowhere in the corpus nor in any
    story of the study (the bank lacks the other stories' sentences: "new" to the bank, but somebody wrote them);
(b) fluent: its mean NLL per token under the shipped mini LM is at most the 95th percentile of real held-out corpus
    sentences the LM never saw (``engine.mini.lm.evaluate_lm``) and every word of it is a word of the corpus; and
    strictly fluent when also its worst token's NLL is at most the same percentile of real sentences' worst tokens
    (the mean over a long sentence hides one garbled word: "there was a a little boy named Bob" passes the first);
(c) at least as good as the true sentence: its similarity in z's place is >= the oracle's.
For fluent_swap the row's text or any entry of its front may succeed. Every figure is read from the rows
``engine.run_experiments`` returns (its run directory is under ``--out``, default ./runs).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import engine
from engine.mini.corpus import DEFAULT_SEED, generate_corpus, generate_story
from engine.mini.lm import evaluate_lm

STUDY_SEED = 2027
WORD = re.compile(r"[A-Za-z]+")
METHODS: dict[str, dict[str, Any]] = {
    "gradient": {"method": "gradient", "init": "I like cheese.", "steps": 100},
    "bank_search": {"method": "bank_search", "init": "I like cheese."},
    "bank_swap": {"method": "bank_swap", "init": "I like cheese."},
    "token_swap": {"method": "token_swap", "init": "bank"},
    "token_swap + fluency 0.1": {"method": "token_swap", "init": "bank", "objective": {"cosine": 1.0, "fluency": 0.1}},
    "fluent_swap": {"method": "fluent_swap", "init": "bank"},
}


def stories(count: int, seed: int = STUDY_SEED) -> list[list[str]]:
    """``count`` generated stories of distinct openings, their first four sentences each."""
    rng, out, seen = random.Random(seed), [], set()
    while len(out) < count:
        sentences = list(generate_story(rng).sentences[:4])
        if len(sentences) >= 2 and sentences[0] not in seen:
            seen.add(sentences[0])
            out.append(sentences)
    return out


def words(text: str) -> set[str]:
    return {w.lower() for w in WORD.findall(text)}


def slug(label: str) -> str:
    return label.replace(" ", "_").replace("+", "plus")


class Judge:
    """Whether a sentence succeeds, by each part of the definition above."""

    def __init__(self, lm: Any, quality: dict[str, float], corpus: set[str], bank: set[str], tales: list[list[str]]):
        self.lm, self.corpus, self.bank, self.tales = lm, corpus, bank, tales
        self.anywhere = corpus | {s for tale in tales for s in tale}
        self.vocabulary = {w for s in corpus for w in words(s)}
        self.mean_cap, self.worst_cap = quality["nll_p95"], quality["worst_token_nll_p95"]
        self._worst: dict[str, float] = {}

    def worst(self, text: str) -> float:
        if text not in self._worst:
            self._worst[text] = max(self.lm.token_nll([text])[0])
        return self._worst[text]

    def __call__(self, text: str, sim: float, nll: float | None, row: dict[str, Any]) -> dict[str, bool]:
        story = set(self.tales[int(row["story"][1:])])
        fluent = nll is not None and nll <= self.mean_cap and words(text) <= self.vocabulary
        return {
            "beats": sim >= row["oracle_sim"],
            "fluent": fluent,
            "strict": fluent and self.worst(text) <= self.worst_cap,
            "new": text not in self.bank and text not in story,
            "unwritten": text not in self.anywhere,
        }


def wins(check: dict[str, bool], strict: bool) -> bool:
    if strict:
        return check["beats"] and check["strict"] and check["unwritten"]
    return check["beats"] and check["fluent"] and check["new"]


def best_win(judged: list[tuple[tuple[str, float, float], dict[str, bool]]], strict: bool) -> Any:
    """The succeeding candidate (text, sim, nll) of highest similarity, or None."""
    return max((c for c, check in judged if wins(check, strict)), key=lambda c: c[1], default=None)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--stories", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40, help="steps of the searches (gradient: 100)")
    parser.add_argument("--optimize", type=int, default=0, help="the sentence z replaces (0..2); the next is scored")
    parser.add_argument("--out", type=Path, default=Path("runs"), help="where the run directory goes")
    parser.add_argument("--quick", action="store_true", help="2 stories, 5 steps, two methods: the mechanics")
    args = parser.parse_args(argv)
    count, steps = (2, 5) if args.quick else (args.stories, args.steps)
    methods = {k: v for k, v in METHODS.items() if not args.quick or k in ("bank_search", "fluent_swap")}
    if not 0 <= args.optimize <= 2:
        parser.error("--optimize must be 0, 1 or 2 (each story has four sentences; the next one is the target)")

    started = time.perf_counter()
    quality = evaluate_lm(sample=300 if args.quick else 2000)
    corpus = generate_corpus(DEFAULT_SEED)
    tales = stories(count)
    story_sentences = {s for tale in tales for s in tale}
    bank = [s for s in corpus.all_sentences() if s not in story_sentences]
    args.out.mkdir(parents=True, exist_ok=True)
    bank_file = (args.out / f"fluent-study-bank-{STUDY_SEED}.txt").resolve()
    bank_file.write_text("\n".join(bank) + "\n", encoding="utf-8")

    experiments = []
    for n in range(count):
        for label, settings in methods.items():
            row = {"name": f"s{n}.{slug(label)}", "story": f"s{n}", **settings}
            if row["method"] != "gradient":
                row.setdefault("steps", steps)
            experiments.append(row)
    story = {"optimize": args.optimize, "targets": [args.optimize + 1]}
    config = engine.make_config(
        {
            "backend": {"kind": "mini", "device": "cpu"},
            "defaults": {"bank": str(bank_file), "decode_every": 10},
            "stories": {f"s{n}": {"sentences": tale, **story} for n, tale in enumerate(tales)},
            "experiments": experiments,
        },
        path=args.out / "fluent-study.toml",
    )
    rows = engine.run_experiments(config, runs_dir=args.out)
    unfinished = [r["name"] for r in rows if r["status"] != "done"]
    if unfinished:
        print(
            f"fluent study: {len(unfinished)} experiments did not finish ({', '.join(unfinished[:3])}, ...): "
            f"see the run directory under {args.out}",
            file=sys.stderr,
        )
        return 1
    judge = Judge(engine.load_backend(config).fluency, quality, set(corpus.all_sentences()), set(bank), tales)

    print(
        f"fluency model: held-out NLL per token p95 {quality['nll_p95']:.3f} (mean {quality['nll_mean']:.3f}), "
        f"worst token p95 {quality['worst_token_nll_p95']:.3f}"
    )
    print(
        f"{count} stories (generator seed {STUDY_SEED}), z in place of sentence {args.optimize}, target sentence "
        f"{args.optimize + 1}; bank of {len(bank):,} sentences; {steps} search steps"
    )
    print()
    print(
        "| Method | Text Sim | Text NLL | Oracle NLL | Text >= Oracle | Fluent | Strictly fluent | New | Unwritten "
        "| All three | All three, strictly | Scorings |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    found = []
    for label in methods:
        mine = [r for r in rows if r["name"].split(".", 1)[1] == slug(label)]
        checks = [judge(r["text"], r["text_sim"], r["text_nll"], r) for r in mine]
        share = {key: sum(c[key] for c in checks) for key in ("beats", "fluent", "strict", "new", "unwritten")}
        loose, strict = sum(wins(c, False) for c in checks), sum(wins(c, True) for c in checks)
        n = len(mine)

        def mean(key: str, mine: list[dict[str, Any]] = mine) -> float:
            return sum(r[key] for r in mine) / len(mine)

        print(
            f"| {label} | {mean('text_sim'):.3f} | {mean('text_nll'):.2f} | {mean('oracle_nll'):.2f} "
            f"| {share['beats']}/{n} | {share['fluent']}/{n} | {share['strict']}/{n} | {share['new']}/{n} "
            f"| {share['unwritten']}/{n} | {loose}/{n} | {strict}/{n} | {mean('scored'):,.0f} |"
        )
        if label == "fluent_swap":
            for row in mine:
                candidates = [(row["text"], row["text_sim"], row["text_nll"])]
                candidates += [(p["text"], p["sim"], p["nll"]) for p in row["front"]]
                judged = [(c, judge(*c, row)) for c in candidates]
                found.append((row, best_win(judged, False), best_win(judged, True), row["scored"] - len(bank)))
    if found:
        loose, strict = sum(f[1] is not None for f in found), sum(f[2] is not None for f in found)
        print()
        print(
            f"fluent_swap, its text or its front: a new, fluent sentence at least as good as the true one on "
            f"{loose} of {count} stories (the issue's test); unwritten and strictly fluent on {strict} of {count}"
        )
        print()
        print("| Story | True sentence (sim, NLL) | Best success (sim, NLL) | Best strict success | Search scorings |")
        print("|---|---|---|---|---:|")
        said = lambda c: f"{c[0]} ({c[1]:.3f}, {c[2]:.2f})" if c else "none"  # noqa: E731
        for row, best_loose, best_strict, searched in found:
            true = tales[int(row["story"][1:])][args.optimize]
            print(
                f"| {row['story']} | {true} ({row['oracle_sim']:.3f}, {row['oracle_nll']:.2f}) | {said(best_loose)} "
                f"| {said(best_strict)} | {searched:,} |"
            )
    print(f"\n({time.perf_counter() - started:.0f} s in all; run directory under {args.out})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
