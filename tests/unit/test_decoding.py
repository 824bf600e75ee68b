"""Decodes as a batch runs them: capped by the story, spared when they cannot change what is shown, and the
results those leave exactly as the old way's (the mini models' decodes all end well before either cap)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine.banks.bank import load_bank
from engine.banks.source import BANK_CORPUS
from engine.methods.bank_search import BankSearchOptions
from engine.methods.bank_swap import BankSwapOptions
from engine.methods.gradient import GradientOptions
from engine.methods.token_swap import TokenSwapOptions
from engine.mini.corpus import LILY_STORY
from engine.run.backend import load_models
from engine.run.batches import optimize_batch
from engine.scoring.problem import DECODE_FLOOR, build_problem, decode_limit, fast_forward
from engine.scoring.scorer import LEGACY_DECODING, MAX_DECODE_LEN, Decoding, Scorer
from engine.spec import Backend, Experiment, Objective, Story

LILY = Story("lily", LILY_STORY, optimize=0, targets=(1, 2))
CE = Objective((("cosine", 1.0), ("decoder_ce", 0.5)))


@pytest.fixture(scope="module")
def models():
    return load_models(Backend(device="cpu"))


@pytest.fixture(scope="module")
def scorer(models):
    problem = build_problem(LILY, models.space, models.predictor, need_tokens=False)
    return Scorer(problem, models.space, fast_forward(models.predictor))


class Counting:
    """The space, counting its decoder calls and the rows they carried."""

    def __init__(self, space):
        self.space, self.calls = space, []

    def decode(self, vectors, **kwargs):
        self.calls.append(len(vectors))
        return self.space.decode(vectors, **kwargs)

    def __getattr__(self, name):
        return getattr(self.space, name)


def noisy(models, texts, scale=0.3, seed=0):
    vectors = models.space.encode(texts)
    noise = torch.randn(vectors.shape, generator=torch.Generator().manual_seed(seed))
    return vectors + scale * vectors.norm(dim=1, keepdim=True) * noise


def test_the_cap_is_twice_the_storys_longest_sentence_with_a_floor(models, scorer):
    _, lengths = models.space.tokenize_targets(list(LILY_STORY))
    assert scorer.problem.decode_len == 2 * int(lengths.max()) == 48
    assert decode_limit([5, 7]) == DECODE_FLOOR
    legacy = Scorer(scorer.problem, scorer.space, scorer.model, decoding=LEGACY_DECODING)
    assert (scorer.decode_len, legacy.decode_len) == (48, MAX_DECODE_LEN)
    lost = 25 * noisy(models, ["I like cheese."], scale=3.0)  # far from every sentence: never says EOS
    capped = models.space.tokenize_targets(scorer.decode(lost, 1))[1]
    assert int(capped[0]) <= 48 + 1 < len(models.space.tokenize_targets(legacy.decode(lost, 1))[0][0])


def test_an_exact_match_decode_stops_when_a_match_is_ruled_out(models):
    space = models.space
    vectors = torch.cat([space.encode(list(LILY_STORY[:3])), noisy(models, list(LILY_STORY[:3]), 2.0, 1)])
    texts = space.decode(vectors, max_len=48)
    wanted = [LILY_STORY[0], texts[1], "Something else.", LILY_STORY[0], texts[4], texts[5] + " And more."]
    full = [text.strip() == want.strip() for text, want in zip(texts, wanted)]
    assert space.decode_matches(vectors, wanted, max_len=48) == full and True in full and False in full
    spared = space.greedy(vectors.to(space.dtype), 48, wanted)
    # Rows ruled out stop early and have no text; the last one's text is a beginning of its wanted text, so
    # it runs to its end (and does not match).
    assert spared == [texts[0], texts[1], None, None, texts[4], texts[5]]


def test_groups_share_one_decoder_call_when_spared(models, scorer):
    counting = Counting(models.space)
    groups = [noisy(models, ["I like cheese."]), noisy(models, list(LILY_STORY[:3]), seed=2)]
    for decoding, calls in ((Decoding(), [4]), (LEGACY_DECODING, [1, 3])):
        counting.calls.clear()
        spared = Scorer(scorer.problem, counting, scorer.model, decoding=decoding)
        texts = spared.decode_groups(groups, 1)
        assert counting.calls == calls
        assert texts == [models.space.decode(group, max_len=spared.decode_len) for group in groups]


def test_every_method_ends_as_it_did_before_decodes_were_spared(models, tmp_path):
    bank = load_bank(BANK_CORPUS, tmp_path, models.space, encoder="mini", dtype="float32", cache_dir=tmp_path)
    gradient = Experiment("g", "I like cheese.", steps=6, decode_every=2)
    batches = [
        [gradient, dataclasses.replace(gradient, name="g2", objective=CE, lr=0.01, steps=4)],
        [
            dataclasses.replace(gradient, options=GradientOptions(snap_every=3)),
            dataclasses.replace(gradient, name="cycle", objective=Objective((("cosine", 1.0), ("cycle", 0.2)))),
        ],
        [dataclasses.replace(gradient, bank=BANK_CORPUS, options=GradientOptions(nearest=True), objective=CE)],
        [
            Experiment("s", "I like cheese.", method="bank_search", bank=BANK_CORPUS, options=BankSearchOptions()),
            Experiment(
                "s2", "I like soup.", method="bank_search", bank=BANK_CORPUS, objective=CE, options=BankSearchOptions()
            ),
        ],
        [
            Experiment(
                "w",
                "I like cheese.",
                method="bank_swap",
                bank=BANK_CORPUS,
                steps=3,
                decode_every=1,
                options=BankSwapOptions(),
            ),
            Experiment(
                "w2", "I like cheese.", method="bank_swap", bank=BANK_CORPUS, steps=2, options=BankSwapOptions(top_k=3)
            ),
        ],
        [
            Experiment(
                "t",
                "I like cheese.",
                method="token_swap",
                steps=3,
                decode_every=1,
                objective=CE,
                options=TokenSwapOptions(),
            ),
            Experiment(
                "t2", "There was a boy.", method="token_swap", steps=4, options=TokenSwapOptions(stop_on_exact=True)
            ),
        ],
    ]

    def run(experiments, decoding):
        rows = optimize_batch(
            experiments,
            LILY,
            models.space,
            models.predictor,
            emit=lambda event: None,
            on_finished=lambda row: None,
            corpus_norms=models.corpus_norms,
            bank=bank,
            decoding=decoding,
        )
        assert all(row["status"] == "done" for row in rows), [row["error"] for row in rows]
        return [{k: v for k, v in row.items() if k != "seconds"} for row in rows]

    for experiments in batches:
        assert run(experiments, Decoding()) == run(experiments, LEGACY_DECODING)
