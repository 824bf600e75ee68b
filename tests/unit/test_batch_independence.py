"""A row's result does not depend on what shares its batch: every method and objective, alone and in two batches.

This is what makes ``--resume`` (which runs what was left, in new batches) equal an uninterrupted run. The
experiment under test runs alone, then among companions of other init texts (other token lengths, so a batched
encoder or fluency-model call would pad it) and settings; every field of its result must be the same, bit for bit
(text_nll and a fluent_swap front included).
"""

from __future__ import annotations

import dataclasses

import pytest

from engine.banks.bank import load_bank
from engine.banks.source import BANK_CORPUS
from engine.methods.bank_search import BankSearchOptions
from engine.methods.bank_swap import BankSwapOptions
from engine.methods.fluent_swap import FluentSwapOptions
from engine.methods.gradient import GradientOptions
from engine.methods.token_swap import TokenSwapOptions
from engine.mini.corpus import LILY_STORY
from engine.run.backend import load_models
from engine.run.batches import optimize_batch
from engine.spec import Backend, Experiment, Objective, Story

LILY = Story("lily", LILY_STORY, optimize=0, targets=(1, 2))
COMPANION_INITS = ("There was a boy named Tom, and he liked to run in the big park every day.", "Hi.", "The dog ran.")


@pytest.fixture(scope="module")
def models():
    return load_models(Backend(device="cpu"))


@pytest.fixture(scope="module")
def corpus(models, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return load_bank(BANK_CORPUS, cache, models.space, encoder="embopt_mini_encoder", dtype="float32", cache_dir=cache)


CASES = {
    "gradient, cosine + cycle": Experiment(
        "x", "I like cheese.", steps=30, decode_every=3, objective=Objective((("cosine", 1.0), ("cycle", 0.5)))
    ),
    "gradient, decoder_ce, snapping": Experiment(
        "x",
        "I like cheese.",
        steps=12,
        decode_every=3,
        objective=Objective((("cosine", 1.0), ("decoder_ce", 0.1))),
        options=GradientOptions(snap_every=4),
    ),
    "gradient, nearest": Experiment(
        "x", "I like cheese.", steps=12, decode_every=3, bank=BANK_CORPUS, options=GradientOptions(nearest=True)
    ),
    "token_swap": Experiment(
        "x",
        "I like cheese.",
        method="token_swap",
        steps=4,
        decode_every=2,
        options=TokenSwapOptions(search_width=12, topk=8),
    ),
    "token_swap, cosine + fluency + repetition": Experiment(
        "x",
        "I like cheese.",
        method="token_swap",
        steps=3,
        decode_every=2,
        objective=Objective((("cosine", 1.0), ("fluency", 0.1), ("repetition", 0.5))),
        options=TokenSwapOptions(search_width=12, topk=8),
    ),
    "fluent_swap": Experiment(
        "x",
        "I like cheese.",
        method="fluent_swap",
        steps=4,
        decode_every=2,
        options=FluentSwapOptions(population=3, search_width=6, topk=8, restart_every=2),
    ),
    "bank_search": Experiment(
        "x", "I like cheese.", method="bank_search", bank=BANK_CORPUS, options=BankSearchOptions(top_k=5)
    ),
    "bank_swap": Experiment(
        "x",
        "I like cheese.",
        method="bank_swap",
        steps=4,
        decode_every=2,
        bank=BANK_CORPUS,
        options=BankSwapOptions(search_width=12),
    ),
}


def companions(experiment: Experiment, inits: tuple[str, ...]) -> list[Experiment]:
    return [
        dataclasses.replace(experiment, name=f"other{n}", init=init, lr=experiment.lr * (n + 2), seed=n + 1)
        for n, init in enumerate(inits)
    ]


def result_of(models, corpus, batch: list[Experiment]) -> dict:
    rows = optimize_batch(
        batch,
        LILY,
        models.space,
        models.predictor,
        emit=lambda event: None,
        on_finished=lambda row: None,
        corpus_norms=models.corpus_norms,
        bank=corpus if batch[0].bank else None,
        fluency=models.fluency,
    )
    (row,) = [r for r in rows if r["name"] == "x"]
    assert row["status"] == "done", row["error"]
    return {k: v for k, v in row.items() if k != "seconds"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_row_ends_the_same_alone_and_in_any_batch(case: str, models, corpus) -> None:
    experiment = CASES[case]
    alone = result_of(models, corpus, [experiment])
    first = result_of(models, corpus, [*companions(experiment, COMPANION_INITS[:1]), experiment])
    second = result_of(models, corpus, [experiment, *companions(experiment, COMPANION_INITS)])
    for key in alone:
        assert first[key] == alone[key], (case, key)
        assert second[key] == alone[key], (case, key)
