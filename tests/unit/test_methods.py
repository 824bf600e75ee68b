"""Every method on the embedded default (real mini encoder, decoder and predictor) and its corpus bank."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from engine import events as ev
from engine.banks.bank import load_bank
from engine.banks.source import BANK_CORPUS
from engine.methods.bank_search import BankSearchOptions
from engine.methods.bank_swap import BankSwapOptions
from engine.methods.gradient import GradientOptions
from engine.methods.token_swap import TokenSwapOptions
from engine.mini.corpus import LILY_STORY
from engine.run.backend import load_models
from engine.run.batches import optimize_batch
from engine.run.runner import run_queue
from engine.scoring.objectives import cycle_distance
from engine.scoring.problem import build_problem, fast_forward
from engine.scoring.scorer import Scorer
from engine.spec import Backend, Experiment, Objective, Spec, Story

LILY = Story("lily", LILY_STORY, optimize=0, targets=(1,))
INIT = "I like cheese."
COSINE_CE = Objective((("cosine", 1.0), ("decoder_ce", 0.1)))


@pytest.fixture(scope="module")
def models():
    return load_models(Backend(device="cpu"))


@pytest.fixture(scope="module")
def corpus(models, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return load_bank(BANK_CORPUS, cache, models.space, encoder="embopt_mini_encoder", dtype="float32", cache_dir=cache)


@pytest.fixture(scope="module")
def scorer(models):
    problem = build_problem(LILY, models.space, models.predictor, need_tokens=False)
    return Scorer(problem, models.space, fast_forward(models.predictor))


def run(models, experiments, bank=None, story=LILY):
    events: list[ev.Event] = []
    results = optimize_batch(
        experiments,
        story,
        models.space,
        models.predictor,
        emit=events.append,
        on_finished=lambda r: None,
        corpus_norms=models.corpus_norms,
        bank=bank,
    )
    for row in results:
        assert row["status"] == "done", row["error"]
    return results, events


def direct_sim(scorer: Scorer, text: str) -> float:
    """The honest score from scratch: the text encoded alone and scored in z's place."""
    return float(scorer.score(scorer.space.encode([text]).float())[0][0])


def gradient(name: str, **options) -> Experiment:
    return Experiment(name, INIT, steps=20, decode_every=5, options=GradientOptions(**options))


def test_snapping_leaves_z_the_embedding_of_a_text(models):
    (row,), events = run(models, [gradient("snap", snap_every=5)])
    z = torch.tensor(row["z"])
    again = models.space.encode([row["decoded_z"]]).float()[0]  # the mini decoder reproduces its inputs' texts
    torch.testing.assert_close(z, again, rtol=0, atol=1e-6)
    assert row["roundtrip_sim"] == pytest.approx(row["final_sim"], abs=1e-5)
    assert row["scored"] >= 2  # each snapped text was a candidate for the honest score


def test_nearest_projection_steps_the_continuous_z_on_bank_rows(models, corpus, scorer):
    (row,), events = run(models, [gradient("near", nearest=True)], bank=corpus)
    every_bank_score = torch.cat([scorer.score(chunk)[0] for _, chunk in corpus.chunks(1024)])
    for step in (e for e in events if isinstance(e, ev.Step)):  # each forward input was a bank row
        assert (every_bank_score - step.sim).abs().min() < 1e-5
    z = torch.tensor(row["z"])
    init = models.space.encode([INIT]).float()[0]
    assert not torch.allclose(z, init)  # the gradient reached the continuous z ...
    nearest_cos = corpus.nearest(z.unsqueeze(0), k=1)[1][0, 0]
    assert nearest_cos < 0.99999  # ... which stays continuous, off the bank
    assert row["text"] in {corpus.text(i) for i in range(len(corpus))}


def test_the_cycle_term_pulls_z_toward_the_embedding_of_its_decode(models):
    z = models.space.encode(["There was a boy named Tom."]).float()
    z = (z + 0.05 * torch.randn(z.shape, generator=torch.Generator().manual_seed(1))).requires_grad_(True)
    again = models.space.encode(models.space.decode(z.detach())).float()
    grad = torch.autograd.grad(cycle_distance(z, again).sum(), z)[0]
    moved = z.detach() - 0.5 * grad
    assert cycle_distance(moved, again) < cycle_distance(z.detach(), again)
    # in a run: with the term, the final z ends nearer the embedding of its own decode than without it
    plain = Experiment("plain", INIT, steps=20)
    cycled = dataclasses.replace(plain, name="cyc", objective=Objective((("cosine", 1.0), ("cycle", 1.0))))
    rows, _ = run(models, [plain, cycled])
    gaps = [float(cycle_distance(torch.tensor([r["z"]]), models.space.encode([r["decoded_z"]]).float())) for r in rows]
    assert gaps[1] < gaps[0]


def test_bank_search_returns_the_planted_best_first(models, scorer, tmp_path):
    oracle = LILY_STORY[0]
    others = [s for s in load_sentences(models) if direct_sim(scorer, s) < direct_sim(scorer, oracle) - 0.05][:60]
    path = tmp_path / "bank.txt"
    path.write_text("\n".join(others[:30] + [oracle, "", oracle] + others[30:]) + "\n", encoding="utf-8")
    bank = load_bank(
        str(path), tmp_path, models.space, encoder="embopt_mini_encoder", dtype="float32", cache_dir=tmp_path
    )
    assert len(bank) == len(others) + 1  # blank line and duplicate dropped
    options = BankSearchOptions(top_k=5)
    (row,), events = run(models, [Experiment("s", INIT, method="bank_search", bank=str(path), options=options)], bank)
    assert row["text"] == oracle and row["top"][0]["text"] == oracle and len(row["top"]) == 5
    assert row["text_sim"] == pytest.approx(direct_sim(scorer, oracle), abs=1e-4)
    assert row["scored"] == len(bank)
    sims = [s["sim"] for s in row["top"]]
    assert sims == sorted(sims, reverse=True)
    trace = [e.sim for e in events if isinstance(e, ev.Step)]
    assert trace == sorted(trace)  # the best so far, chunk after chunk


def load_sentences(models) -> list[str]:
    from engine.banks.source import corpus_sentences

    return list(corpus_sentences()[:400])


def test_bank_swap_reaches_bank_search_with_a_tenth_of_the_scorings(models, corpus):
    search = Experiment("search", INIT, method="bank_search", bank=BANK_CORPUS, options=BankSearchOptions())
    swap = Experiment("swap", INIT, method="bank_swap", bank=BANK_CORPUS, steps=10, options=BankSwapOptions())
    (full,), _ = run(models, [search], corpus)
    (found,), events = run(models, [swap], corpus)
    assert found["scored"] <= 0.10 * len(corpus)
    assert found["text_sim"] >= 0.98 * full["text_sim"]
    assert found["text_sim"] >= found["init_sim"] - 1e-6  # never worse than where it started
    trace = [e.sim for e in events if isinstance(e, ev.Step)]
    assert trace == sorted(trace)


def test_bank_swap_never_ends_below_its_start(models, tmp_path):
    path = tmp_path / "weak.txt"
    path.write_text("The cat sat.\nA dog ran.\nIt was red.\n", encoding="utf-8")
    bank = load_bank(
        str(path), tmp_path, models.space, encoder="embopt_mini_encoder", dtype="float32", cache_dir=tmp_path
    )
    init = LILY_STORY[0]  # the true sentence: no weak bank sentence beats it
    swap = Experiment(
        "swap", init, method="bank_swap", bank=str(path), steps=5, options=BankSwapOptions(search_width=2)
    )
    (row,), _ = run(models, [swap], bank)
    assert row["text"] == init and row["text_sim"] == pytest.approx(row["init_sim"], abs=1e-4)
    assert row["scored"] == 3  # the bank ran out: it stopped


@pytest.mark.parametrize("objective", [Objective(), COSINE_CE], ids=["cosine", "cosine+ce"])
def test_every_method_scores_its_text_honestly(models, corpus, scorer, objective):
    queue = [
        dataclasses.replace(gradient("grad"), objective=objective),
        dataclasses.replace(gradient("snap", snap_every=4), objective=objective),
        dataclasses.replace(gradient("near", nearest=True), objective=objective, bank=BANK_CORPUS),
        Experiment(
            "swap", INIT, method="bank_swap", bank=BANK_CORPUS, steps=3, objective=objective, options=BankSwapOptions()
        ),
    ]
    rows = []
    for batch in ([queue[0], queue[1]], [queue[2]], [queue[3]]):
        rows += run(models, batch, corpus if batch[0].bank else None)[0]
    for row in rows:
        assert row["text"] and row["scored"] >= 1
        assert row["text_sim"] == pytest.approx(direct_sim(scorer, row["text"]), abs=1e-4), row["name"]
        assert len(row["text_exact_match"]) == len(LILY.targets)


def test_the_queue_batches_by_method_and_a_second_run_reads_the_bank_cache(models, tmp_path, monkeypatch):
    monkeypatch.setenv("EMBOPT_CACHE_DIR", str(tmp_path))
    queue = (
        Experiment("g", INIT, steps=3),
        Experiment("s", INIT, method="bank_search", bank=BANK_CORPUS, options=BankSearchOptions()),
        Experiment("g2", INIT, steps=3, lr=0.01),
    )
    spec = Spec(tmp_path / "q.toml", models.backend, {"lily": LILY}, queue)
    runs = []
    for _ in range(2):
        events: list[ev.Event] = []
        result = run_queue(spec, events.append, models=models)
        assert [r["status"] for r in result.experiments] == ["done"] * 3
        runs.append(events)
    batches = {e.name: e.batch for e in runs[0] if isinstance(e, ev.ExperimentStarted)}
    assert batches == {"g": ("g", "g2"), "g2": ("g", "g2"), "s": ("s",)}
    first, second = ([e for e in r if isinstance(e, ev.BankLoading)] for r in runs)
    assert not first[-1].cached and first[-1].done == first[-1].total > 0
    assert second[-1].cached and len(second) == 1  # read back: nothing encoded


# --- token swap and early stop -------------------------------------------------------------------------------
def token_swap(name: str, init: str = INIT, steps: int = 15, seed: int = 0, **options) -> Experiment:
    return Experiment(name, init, method="token_swap", steps=steps, seed=seed, options=TokenSwapOptions(**options))


def test_token_swap_scores_real_strings_and_never_ends_below_its_start(models, scorer):
    (row,), events = run(models, [token_swap("tok", search_width=16)])
    assert row["text_sim"] >= row["init_sim"] - 1e-6
    for entry in row["top"]:  # every scored candidate is a string whose encoding is what was scored
        assert entry["sim"] == pytest.approx(direct_sim(scorer, entry["text"]), abs=1e-5)
        ids = models.space.source_ids(entry["text"])
        assert models.space.text_of(ids[1:-1]) == entry["text"]
    assert row["text_sim"] == pytest.approx(direct_sim(scorer, row["text"]), abs=1e-4)
    trace = [e.sim for e in events if isinstance(e, ev.Step)]
    assert trace == sorted(trace) and row["scored"] == row["search_trace"][-1][0]
    assert any(isinstance(e, ev.Decoded) and e.text for e in events)  # the sentence, shown as it evolves


def test_token_swap_finds_a_planted_one_word_fix(models, scorer):
    fixed = LILY_STORY[0]
    planted = fixed.replace("girl", "tree")  # one word off the true sentence, far below it
    assert direct_sim(scorer, planted) < direct_sim(scorer, fixed) - 0.05
    (row,), _ = run(models, [token_swap("fix", planted, steps=10, topk=64)])
    assert row["text_sim"] >= direct_sim(scorer, fixed) - 1e-4
    assert row["text_sim"] >= row["oracle_sim"] - 1e-4  # the true sentence's score, at least


def test_token_swap_is_reproducible_by_seed(models):
    rows, _ = run(models, [token_swap("a", seed=3, search_width=8), token_swap("b", seed=3, search_width=8)])
    (alone,), _ = run(models, [token_swap("c", seed=3, search_width=8)])
    assert rows[0]["text"] == rows[1]["text"] == alone["text"]
    assert rows[0]["search_trace"] == alone["search_trace"]


def test_token_swap_from_the_init_reaches_the_oracle_on_lily(models):
    (row,), _ = run(models, [token_swap("tok", steps=30)])
    assert row["text_sim"] >= row["oracle_sim"]


def test_token_swap_from_the_bank_starts_at_the_banks_best(models, corpus):
    (search,), _ = run(
        models, [Experiment("s", INIT, method="bank_search", bank=BANK_CORPUS, options=BankSearchOptions())], corpus
    )
    (row,), _ = run(
        models,
        [
            Experiment(
                "t", "bank", method="token_swap", bank=BANK_CORPUS, steps=3, options=TokenSwapOptions(search_width=8)
            )
        ],
        corpus,
    )
    assert row["init_sim"] == pytest.approx(search["text_sim"], abs=1e-5)
    assert row["text_sim"] >= row["init_sim"] - 1e-6 and row["scored"] > len(corpus)


def test_stop_on_exact_ends_a_decoder_ce_run_early(models):
    (row,), _ = run(
        models,
        [
            Experiment(
                "ce",
                INIT,
                steps=200,
                objective=Objective((("decoder_ce", 1.0),)),
                options=GradientOptions(stop_on_exact=True),
            )
        ],
    )
    assert row["steps_done"] < 200 and all(row["exact_match"])


def test_stop_at_ends_each_method_once_its_honest_score_is_reached(models, corpus):
    stop = {"stop_at": 0.5}
    queue = [
        (Experiment("search", INIT, method="bank_search", bank=BANK_CORPUS, options=BankSearchOptions(**stop)), corpus),
        (Experiment("swap", INIT, method="bank_swap", bank=BANK_CORPUS, options=BankSwapOptions(**stop)), corpus),
        (token_swap("tok", steps=100, **stop), None),
    ]
    for experiment, bank in queue:
        (row,), _ = run(models, [experiment], bank)
        assert row["text_sim"] >= 0.5 and row["steps_done"] < row["steps"], row["name"]
