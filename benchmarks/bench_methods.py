"""Bank search and bank swap on the embedded default, measured side by side in one run.

1. Bank search's scoring rate (sentences scored exactly per second, chunked
   and batched) against a straightforward loop that scores the same bank one
   sentence at a time (one predictor call of one row each), on the Lily story.
2. Bank swap against bank search on a small generated set of stories (held-out
   stories of the embedded corpus: optimise sentence 0, score sentence 1, init
   "I like cheese."): the share of the bank swap scored and the fraction of
   bank search's best it reached, averaged over the stories.
3. Token swap, fluent_swap and bank swap at the same budgets: the honest
   score each has reached after 1,000 and 3,000 exact scorings (from its
   search trace), averaged over the same stories, with the oracle (the true
   sentence) beside them, and fluent_swap's text NLL beside token swap's.
4. Candidates scored per second with the fluency model on and off: token swap
   with objective cosine against {cosine = 1, fluency = 0.1} (each candidate
   also read by the fluency model), and fluent_swap, on the Lily story.

    python benchmarks/bench_methods.py [--stories N] [--swap-steps S] [--naive N]

Threads: EMBOPT_THREADS (1 when unset), the same for both sides.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=5, help="generated stories for the swap comparison")
    parser.add_argument("--swap-steps", type=int, default=10, help="bank swap steps (x search_width 64 scorings)")
    parser.add_argument("--naive", type=int, default=1000, help="sentences the one-at-a-time loop scores")
    args = parser.parse_args()

    import torch

    torch.set_num_threads(int(os.environ.get("EMBOPT_THREADS", "1")))
    from engine.banks.bank import load_bank
    from engine.methods.bank_search import BankSearchOptions
    from engine.methods.bank_swap import BankSwapOptions
    from engine.mini.corpus import LILY_STORY, generate_corpus
    from engine.run.backend import load_models
    from engine.run.batches import optimize_batch
    from engine.scoring.problem import build_problem, fast_forward, predict
    from engine.spec import Backend, Experiment, Story

    models = load_models(Backend(device="cpu"))
    space, predictor = models.space, models.predictor
    cache = Path(tempfile.mkdtemp(prefix="bench-methods-"))
    bank = load_bank("corpus", cache, space, encoder="embopt_mini_encoder", dtype="float32", cache_dir=cache)
    print(f"bank: the embedded corpus, {len(bank)} sentences")

    def run(experiment: Experiment, story: Story) -> tuple[dict, float]:
        start = time.perf_counter()
        events: list = []
        (row,) = optimize_batch(
            [experiment],
            story,
            space,
            predictor,
            emit=events.append,
            on_finished=lambda r: None,
            corpus_norms=models.corpus_norms,
            bank=bank,
            fluency=models.fluency,
        )
        assert row["status"] == "done", row["error"]
        return row, time.perf_counter() - start

    # 1. scoring rate
    lily = Story("lily", LILY_STORY, optimize=0, targets=(1,))
    search = Experiment("search", "I like cheese.", method="bank_search", bank="corpus", options=BankSearchOptions())
    run(search, lily)  # warm-up
    row, seconds = run(search, lily)
    engine_rate = row["scored"] / seconds
    problem = build_problem(lily, space, predictor, need_tokens=False)
    model = fast_forward(predictor)
    n = min(args.naive, len(bank))
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(n):
            e = bank.rows([i])
            torch.nn.functional.cosine_similarity(
                predict(model, problem, e), problem.targets.unsqueeze(0), dim=-1
            ).mean()
    naive_rate = n / (time.perf_counter() - start)
    print(f"bank search: {engine_rate:,.0f} sentences/s (whole bank, {seconds:.2f}s incl. start and top-k rescoring)")
    print(f"one at a time: {naive_rate:,.0f} sentences/s ({n} sentences)")
    print(f"scoring speedup: {engine_rate / naive_rate:.1f}")

    # 2. swap vs search over a small generated set
    stories = [
        Story(f"s{k}", s.sentences, optimize=0, targets=(1,))
        for k, s in enumerate(generate_corpus().heldout[: args.stories])
    ]
    swap = Experiment(
        "swap", "I like cheese.", method="bank_swap", bank="corpus", steps=args.swap_steps, options=BankSwapOptions()
    )
    shares, reached = [], []
    for story in stories:
        best, _ = run(search, story)
        found, _ = run(swap, story)
        shares.append(found["scored"] / len(bank))
        reached.append(found["text_sim"] / best["text_sim"])
        print(
            f"  {story.name}: search best {best['text_sim']:.3f}, swap {found['text_sim']:.3f} "
            f"with {found['scored']} scorings ({shares[-1]:.1%} of the bank)"
        )
    print(f"bank swap: scored {sum(shares) / len(shares):.1%} of the bank on average")
    print(f"bank swap: reached {sum(reached) / len(reached):.1%} of bank search's best on average")

    # 3. token swap, fluent_swap and bank swap per 1,000 and 3,000 scorings
    from engine.methods.fluent_swap import FluentSwapOptions
    from engine.methods.token_swap import TokenSwapOptions
    from engine.spec import Objective

    budgets = (1000, 3000)

    def at_budget(row: dict, budget: int) -> float:
        points = [p for p in row["search_trace"] if p[0] <= budget]
        return points[-1][1] if points else row["init_sim"]

    contenders = {
        "bank swap": Experiment(
            "swap", "I like cheese.", method="bank_swap", bank="corpus", steps=48, options=BankSwapOptions()
        ),
        # steps enough for 3,000 scorings: token swap's retokenisation check and both searches' "seen" sets
        # drop many of a step's candidates
        "token swap": Experiment(
            "tokens", "I like cheese.", method="token_swap", steps=200, options=TokenSwapOptions()
        ),
        "fluent_swap": Experiment(
            "fluent", "I like cheese.", method="fluent_swap", steps=60, options=FluentSwapOptions()
        ),
    }
    per_k: dict[tuple[str, int], list[float]] = {}
    nll: dict[str, list[float]] = {name: [] for name in contenders}
    spent: dict[str, list[int]] = {name: [] for name in contenders}
    oracle = []
    for story in stories:
        line = []
        for name, experiment in contenders.items():
            found, _ = run(experiment, story)
            for budget in budgets:
                per_k.setdefault((name, budget), []).append(at_budget(found, budget))
            nll[name].append(found["text_nll"])
            spent[name].append(found["scored"])
            line.append(
                f"{name} {per_k[(name, 1000)][-1]:.3f}/{per_k[(name, 3000)][-1]:.3f} in {found['scored']:,}"
                f" ({found['text']!r})"
            )
        oracle.append(found["oracle_sim"])
        print(f"  {story.name}: at 1,000/3,000 scorings " + ", ".join(line) + f"; oracle {oracle[-1]:.3f}")
    for name in contenders:
        scores = ", ".join(f"{sum(per_k[(name, b)]) / len(stories):.3f} after {b:,} scorings" for b in budgets)
        used = sum(spent[name]) / len(stories)
        print(
            f"{name}: honest score {scores} on average (text NLL {sum(nll[name]) / len(stories):.2f});"
            f" it spent {used:,.0f} scorings on average (candidates already scored are not scored again; where a"
            " search spent less than a budget, its last score counts for it)"
        )
    print(f"oracle (the true sentence): {sum(oracle) / len(oracle):.3f} on average")

    # 4. candidates per second, fluency on and off
    fluent_objective = Objective((("cosine", 1.0), ("fluency", 0.1)))
    rates = {}
    for label, experiment in {
        "token swap, cosine": Experiment(
            "t", "I like cheese.", method="token_swap", steps=8, options=TokenSwapOptions()
        ),
        "token swap, cosine + fluency": Experiment(
            "tf", "I like cheese.", method="token_swap", steps=8, objective=fluent_objective, options=TokenSwapOptions()
        ),
        "fluent_swap": Experiment("f", "I like cheese.", method="fluent_swap", steps=4, options=FluentSwapOptions()),
    }.items():
        run(experiment, lily)  # warm-up (the fluency model's first call, the word tables)
        found, seconds = run(experiment, lily)
        rates[label] = found["scored"] / seconds
        print(f"{label}: {rates[label]:,.0f} candidates scored per second ({found['scored']} in {seconds:.2f}s)")
    ratio = rates["token swap, cosine + fluency"] / rates["token swap, cosine"]
    print(f"the fluency term costs token swap {1 - ratio:.0%} of its candidate rate")


if __name__ == "__main__":
    main()
