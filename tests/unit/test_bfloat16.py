"""Every method and objective runs in bfloat16 (the mini models loaded in it), and its honest score is exact."""

from __future__ import annotations

import math

import pytest
import torch

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
from engine.scoring.problem import build_problem, fast_forward
from engine.scoring.scorer import Scorer
from engine.spec import Backend, Experiment, Objective, Story

LILY = Story("lily", LILY_STORY, optimize=0, targets=(1,))
OBJECTIVES = {
    "cosine": Objective((("cosine", 1.0),)),
    "decoder_ce": Objective((("decoder_ce", 1.0),)),
}
CASES = {  # (method, options, bank, extra objective terms)
    "gradient": ("gradient", GradientOptions(), None, ()),
    "snapping": ("gradient", GradientOptions(snap_every=2), None, ()),
    "nearest": ("gradient", GradientOptions(nearest=True), BANK_CORPUS, ()),
    "cycle": ("gradient", GradientOptions(), None, (("cycle", 0.1),)),
    "bank_search": ("bank_search", BankSearchOptions(top_k=3), BANK_CORPUS, ()),
    "bank_swap": ("bank_swap", BankSwapOptions(search_width=8), BANK_CORPUS, ()),
    "token_swap": ("token_swap", TokenSwapOptions(search_width=8), None, ()),
    "token_swap + fluency": ("token_swap", TokenSwapOptions(search_width=8), None, (("fluency", 0.1),)),
    "fluent_swap": ("fluent_swap", FluentSwapOptions(population=2, search_width=4, topk=4), None, ()),
}


@pytest.fixture(scope="module")
def models():
    models = load_models(Backend(device="cpu", dtype="bfloat16"))
    assert models.space.dtype == torch.bfloat16 and next(models.predictor.parameters()).dtype == torch.bfloat16
    return models


@pytest.fixture(scope="module")
def bank(models, tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    return load_bank(BANK_CORPUS, cache, models.space, encoder="embopt_mini_encoder", dtype="bfloat16", cache_dir=cache)


@pytest.mark.parametrize("objective", list(OBJECTIVES))
@pytest.mark.parametrize("case", list(CASES))
def test_every_method_runs_in_bfloat16(models, bank, case, objective):
    method, options, bank_value, extra = CASES[case]
    weights = Objective(OBJECTIVES[objective].weights + extra)
    experiment = Experiment(
        case,
        "I like cheese.",
        method=method,
        steps=3,
        decode_every=2,
        objective=weights,
        options=options,
        bank=bank_value,
    )
    (row,) = optimize_batch(
        [experiment],
        LILY,
        models.space,
        models.predictor,
        emit=lambda event: None,
        on_finished=lambda r: None,
        corpus_norms=models.corpus_norms,
        bank=bank,
        fluency=models.fluency,
    )
    assert row["status"] == "done", row["error"]
    assert all(math.isfinite(row[k]) for k in ("init_sim", "final_sim", "text_sim"))
    problem = build_problem(LILY, models.space, models.predictor, need_tokens=False)
    scorer = Scorer(problem, models.space, fast_forward(models.predictor))
    honest = float(scorer.score(scorer.encode([row["text"]]))[0][0])
    assert row["text_sim"] == pytest.approx(honest, abs=1e-6)  # scored in z's place, in bfloat16 as it ran
    assert row["text_nll"] == pytest.approx(models.fluency.nll([row["text"]], fresh=True)[0], abs=1e-6)
