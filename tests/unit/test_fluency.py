"""The fluency model (the shipped mini LM, loaded as any Hugging Face causal LM), the text terms, every method's
``text_nll``/``oracle_nll``, and fluent_swap's mechanics: its front and the exactness of every number it reports."""

from __future__ import annotations

import math
import random

import pytest
import torch

from engine import events as ev
from engine.methods.fluent_swap import FluentSwapOptions, weights_of
from engine.methods.gradient import GradientOptions
from engine.methods.token_swap import TokenSwapOptions
from engine.mini.corpus import LILY_STORY, generate_corpus
from engine.mini.lm import LM_DIR
from engine.models.fluency import FluencyError, lm_dir_problem, load_fluency, repetition_penalty
from engine.run.backend import load_models
from engine.run.batches import optimize_batch
from engine.scoring.objectives import Weights
from engine.scoring.problem import build_problem, fast_forward
from engine.scoring.scorer import Scorer
from engine.spec import Backend, Experiment, Objective, Story

LILY = Story("lily", LILY_STORY, optimize=0, targets=(1,))
START = "Once upon a time, there was a little girl named Mia."
FLUENT = Objective((("cosine", 1.0), ("fluency", 0.5)))


@pytest.fixture(scope="module")
def models():
    return load_models(Backend(device="cpu"))


@pytest.fixture(scope="module")
def lm(models):
    assert models.fluency is not None, "the mini backend has a fluency model by default"
    return models.fluency


@pytest.fixture(scope="module")
def scorer(models):
    problem = build_problem(LILY, models.space, models.predictor, need_tokens=False)
    return Scorer(problem, models.space, fast_forward(models.predictor), models.fluency)


def run(models, experiments, bank=None):
    events: list[ev.Event] = []
    rows = optimize_batch(
        experiments,
        LILY,
        models.space,
        models.predictor,
        emit=events.append,
        on_finished=lambda r: None,
        corpus_norms=models.corpus_norms,
        bank=bank,
        fluency=models.fluency,
    )
    for row in rows:
        assert row["status"] == "done", row["error"]
    return rows


def direct_sim(scorer: Scorer, text: str) -> float:
    return float(scorer.score(scorer.space.encode([text]).float())[0][0])


def fluent_swap(name: str, objective: Objective | None = None, steps: int = 4, **options) -> Experiment:
    settings = {"population": 3, "search_width": 6, "topk": 8, "restart_every": 2, **options}
    return Experiment(
        name, START, method="fluent_swap", steps=steps, decode_every=2, objective=objective or Objective(),
        options=FluentSwapOptions(**settings), seed=7,
    )  # fmt: skip


def test_the_mini_lm_is_a_standard_transformers_directory():
    assert lm_dir_problem(LM_DIR) is None
    assert {p.name for p in LM_DIR.iterdir()} >= {"config.json", "model.safetensors", "tokenizer.json"}
    assert lm_dir_problem(LM_DIR / "absent") == "does not exist"
    assert lm_dir_problem(LM_DIR.parent / "predictor").startswith("no tokenizer")


def test_nll_reads_language_better_than_its_words_shuffled(lm):
    rng = random.Random(0)
    corpus = generate_corpus(1234, 300)
    sentences = sorted(set(corpus.heldout_sentences()))[:40]
    shuffled = []
    for sentence in sentences:
        words = sentence.split()
        while words == sentence.split() and len(words) > 1:
            rng.shuffle(words)
        shuffled.append(" ".join(words))
    real, mixed = lm.nll(sentences, fresh=True), lm.nll(shuffled, fresh=True)
    wins = sum(a < b for a, b, s in zip(real, mixed, sentences) if len(s.split()) > 2)
    assert wins == sum(len(s.split()) > 2 for s in sentences)
    assert all(0 < n < 3 for n in real)


def test_nll_is_the_mean_token_nll_and_does_not_depend_on_its_batch(lm):
    texts = ["She loved to play outside with her toys.", "Tom saw a big dog.", "dog the a big saw Tom."]
    together = lm.nll(texts, fresh=True)
    alone = [lm.nll([t], fresh=True)[0] for t in texts]
    assert together == pytest.approx(alone, abs=1e-5)
    assert lm.nll(texts) == pytest.approx(together, abs=1e-6)  # the cache gives the same numbers
    # By hand: the tokens and the end of text, each from the beginning of text and what precedes it.
    tok = lm.tokenizer
    ids = [tok.bos_token_id, *lm.tokens(texts[0]), tok.eos_token_id]
    with torch.no_grad():
        logits = lm.model(input_ids=torch.tensor([ids])).logits[0, :-1].float()
    by_hand = torch.nn.functional.cross_entropy(logits, torch.tensor(ids[1:])).item()
    assert together[0] == pytest.approx(by_hand, abs=1e-5)


def test_repetition_penalty_is_flrts():
    assert repetition_penalty([1, 2, 3]) == 0.0
    assert repetition_penalty([1, 1, 2, 3]) == pytest.approx(1 / 4)
    assert repetition_penalty([5, 5, 5, 1]) == pytest.approx(2**1.5 / 4)


def test_next_words_are_whole_corpus_words(lm):
    vocabulary = {w.strip(".,!?\"'").lower() for s in generate_corpus(1234, 200).all_sentences() for w in s.split()}
    (after_once, after_she) = lm.next_words(["Once upon a", "She loved to"], 5)
    assert after_once[0] == "time"
    assert all(w.isalpha() and w.lower() in vocabulary for w in after_once + after_she)


def test_a_folder_that_is_not_a_language_model_fails_in_one_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "nonsense"}')
    (tmp_path / "model.safetensors").write_bytes(b"")
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(FluencyError) as caught:
        load_fluency(tmp_path, "lm", torch.device("cpu"), torch.float32)
    assert "\n" not in str(caught.value) and str(caught.value).startswith("backend.fluency: lm: ")


def test_the_text_terms_add_weight_times_nll_and_the_repetition_penalty(scorer, lm):
    texts = ["She loved to play outside.", "She she she loved loved to play."]
    preds = scorer.predictions(scorer.encode(texts))
    base = scorer.loss(preds, Weights.of([Objective()] * 2, preds.device))
    terms = Objective((("cosine", 1.0), ("fluency", 0.3), ("repetition", 2.0)))
    loss = scorer.loss(preds, Weights.of([terms] * 2, preds.device), texts=texts)
    expected = [0.3 * n + 2.0 * r for n, r in zip(lm.nll(texts), lm.repetition(texts))]
    assert (loss - base).tolist() == pytest.approx(expected, abs=1e-5)
    assert lm.repetition(texts)[1] > 0 == lm.repetition(texts)[0]


def test_every_method_reports_its_texts_fluency_and_the_oracles(models, scorer, lm):
    queue = [
        Experiment("grad", "I like cheese.", steps=6, decode_every=3, options=GradientOptions()),
        Experiment("tswap", "I like cheese.", method="token_swap", steps=2, options=TokenSwapOptions(search_width=8)),
        Experiment("tswap-f", "I like cheese.", method="token_swap", steps=2, objective=FLUENT,
                   options=TokenSwapOptions(search_width=8)),
        fluent_swap("fswap", steps=2),
    ]  # fmt: skip
    rows = [row for batch in ([queue[0]], queue[1:3], [queue[3]]) for row in run(models, batch)]
    oracle = lm.nll([LILY_STORY[0]], fresh=True)[0]
    for row in rows:
        assert row["text_nll"] == pytest.approx(lm.nll([row["text"]], fresh=True)[0], abs=1e-5), row["name"]
        assert row["oracle_nll"] == pytest.approx(oracle, abs=1e-5)
        assert row["text_sim"] == pytest.approx(direct_sim(scorer, row["text"]), abs=1e-5), row["name"]


def test_the_gradient_method_refuses_a_text_term_it_cannot_differentiate():
    from engine.methods import METHODS
    from engine.methods.method import Invalid

    experiment = Experiment("g", "I like cheese.", objective=FLUENT, options=GradientOptions())
    with pytest.raises(Invalid) as caught:
        METHODS["gradient"].check(experiment)
    assert caught.value.key == "objective" and "fluency" in caught.value.message


def test_population_weights_are_log_spaced():
    assert weights_of(FluentSwapOptions()) == pytest.approx([0.1 * 100 ** (i / 7) for i in range(8)])
    assert weights_of(FluentSwapOptions(population=1, weight_max=3.0)) == [3.0]
    assert weights_of(FluentSwapOptions(population=3, weight_min=0.0, weight_max=1.0)) == [0.0, 0.5, 1.0]


@pytest.fixture(scope="module")
def swapped(models):
    """Two fluent_swap rows, same seed and search, one choosing by the task alone, one with a fluency weight."""
    return run(models, [fluent_swap("task"), fluent_swap("fluent", objective=FLUENT)])


def test_fluent_swaps_front_is_exact_and_not_dominated(swapped, scorer, lm):
    for row in swapped:
        front = row["front"]
        assert len(front) >= 2
        assert [p["sim"] for p in front] == sorted((p["sim"] for p in front), reverse=True)
        for a in front:  # no point beats another on both similarity and NLL
            assert not any(b is not a and b["sim"] >= a["sim"] and b["nll"] <= a["nll"] for b in front)
        texts = [p["text"] for p in front]
        assert [p["sim"] for p in front] == pytest.approx([direct_sim(scorer, t) for t in texts], abs=1e-5)
        assert [p["nll"] for p in front] == pytest.approx([lm.nll([t], fresh=True)[0] for t in texts], abs=1e-5)
        # The row's text is one it scored; the front reaches at least as far on similarity.
        assert row["text_sim"] <= front[0]["sim"] + 1e-5
        assert row["scored"] > 10 and row["steps_done"] == 4


def test_fluent_swap_searches_alike_and_chooses_by_its_own_objective(swapped):
    task, fluent = swapped
    assert task["front"] == fluent["front"]  # the search is the population's: same seed, same candidates
    assert task["text_sim"] >= fluent["text_sim"] - 1e-6
    assert fluent["text_nll"] <= task["text_nll"] + 1e-6
    # Each choice minimises its objective over the front (which holds every objective's minimiser).
    best = min(fluent["front"], key=lambda p: -p["sim"] + 0.5 * p["nll"])
    assert fluent["text"] == best["text"]
    assert task["text"] == fluent["front"][0]["text"]


def test_fluent_swap_is_reproducible_by_seed(models, swapped):
    (again,) = run(models, [fluent_swap("task")])
    assert again["front"] == swapped[0]["front"] and again["text"] == swapped[0]["text"]


def test_fluent_swaps_edits_keep_every_word_a_word(swapped):
    for row in swapped:
        for point in row["front"]:
            assert all(any(c.isalpha() for c in w) for w in point["text"].split()), point
            assert not math.isnan(point["nll"])
