"""The batched projected-gradient loop on real (tiny, random-init) fairseq2 cards and predictor."""

from __future__ import annotations

import pytest
import torch

from engine.events import Decoded, ExperimentStarted, Step
from engine.methods.gradient import optimizer_step
from engine.mini.corpus import LILY_STORY
from engine.models.predictor import BEGIN_TEXT
from engine.run.backend import load_models
from engine.run.batches import optimize_batch
from engine.scoring.problem import build_problem, predict
from engine.spec import Experiment, Objective, Story

LILY = Story("lily", LILY_STORY, optimize=0, targets=(1, 2))


@pytest.fixture(scope="module")
def models(tiny_backend):
    return load_models(tiny_backend)


def run(models, experiments, story=LILY):
    events = []
    finished = []
    results = optimize_batch(
        experiments,
        story,
        models.space,
        models.predictor,
        emit=events.append,
        on_finished=finished.append,
        corpus_norms=models.corpus_norms,
    )
    return results, events, finished


MIXED = (
    Experiment("adam", "I like cheese.", lr=0.02, steps=6, decode_every=3),
    Experiment("sgd", "There was a boy named Tom.", lr=0.5, steps=4, optimizer="sgd", norm=0.5),
    Experiment("ce", "I like cheese.", lr=0.01, steps=5, objective=Objective((("cosine", 1.0), ("decoder_ce", 0.1)))),
    Experiment(
        "mse", "There was a boy named Tom.", lr=0.05, steps=3, norm="none", objective=Objective((("mse", 1.0),))
    ),
)


def test_optimizer_step_is_torch_adam_and_sgd_per_row():
    gen = torch.Generator().manual_seed(0)
    z0 = torch.randn(3, 8, generator=gen)
    grads = [torch.randn(3, 8, generator=gen) for _ in range(5)]
    lrs = [0.1, 0.01, 0.3]
    adam = torch.tensor([[True], [True], [False]])
    z, m, v = z0.clone(), torch.zeros_like(z0), torch.zeros_like(z0)
    for step, g in enumerate(grads, 1):
        z = optimizer_step(z, g, m, v, torch.tensor(lrs).unsqueeze(1), adam, step)
    for row, lr in enumerate(lrs):
        p = z0[row].clone().requires_grad_(True)
        opt = torch.optim.Adam([p], lr=lr) if adam[row] else torch.optim.SGD([p], lr=lr)
        for g in grads:
            p.grad = g[row].clone()
            opt.step()
        torch.testing.assert_close(z[row], p.detach(), rtol=0, atol=1e-6)


def test_each_row_of_a_batch_ends_where_it_would_alone(models):
    together, _, _ = run(models, MIXED)
    for experiment, row in zip(MIXED, together):
        alone = run(models, [experiment])[0][0]
        assert row["status"] == alone["status"] == "done", row["error"]
        assert row["steps_done"] == experiment.steps and len(row["trajectory"]) == experiment.steps + 1
        torch.testing.assert_close(torch.tensor(row["z"]), torch.tensor(alone["z"]), rtol=0, atol=1e-5)
        torch.testing.assert_close(
            torch.tensor(row["trajectory"]), torch.tensor(alone["trajectory"]), rtol=0, atol=1e-5
        )
        for key in ("final_sim", "best_sim", "oracle_sim", "roundtrip_sim", "init_sim"):
            assert row[key] == pytest.approx(alone[key], abs=1e-5), key
        assert row["decoded_z"] == alone["decoded_z"]


def test_batch_company_does_not_move_a_sensitive_row():
    """On the trained mini models Adam near a plateau turns last-bit differences into visible ones
    (~1e-1 after 100 steps at lr 0.05); rows must therefore be computed identically in any batch."""
    from engine.spec import Backend

    mini = load_models(Backend(device="cpu"))
    lily = Story("lily", LILY_STORY, optimize=0, targets=(1,))
    queue = [
        Experiment(name, init, lr=lr, steps=steps)
        for name, init, lr, steps in (
            ("baseline", "I like cheese.", 0.02, 30),
            ("higher_lr", "I like cheese.", 0.05, 40),
            ("lower_lr", "I like cheese.", 0.005, 30),
            ("story_init", "There was a boy named Tom.", 0.02, 30),
        )
    ]
    together = run(mini, queue, lily)[0]
    for experiment, row in zip(queue[:2], together[:2]):
        alone = run(mini, [experiment], lily)[0][0]
        torch.testing.assert_close(torch.tensor(row["z"]), torch.tensor(alone["z"]), rtol=0, atol=1e-5)
        torch.testing.assert_close(
            torch.tensor(row["trajectory"]), torch.tensor(alone["trajectory"]), rtol=0, atol=1e-5
        )
    assert together[1]["final_sim"] > together[1]["init_sim"]


def test_only_z_gets_gradients(models):
    run(models, MIXED[:1])
    modules = [models.predictor, models.space.decoder, models.space.encoder_pipeline.model]
    for module in modules:
        for name, param in module.named_parameters():
            assert param.grad is None and not param.requires_grad, name


def test_projection_holds_the_norm_after_every_step(models):
    _, events, _ = run(models, MIXED)
    norms: dict[str, list[float]] = {}
    for event in events:
        if isinstance(event, Step):
            norms.setdefault(event.name, []).append(event.norm)
    reference = torch.cat(
        [models.corpus_norms, build_problem(LILY, models.space, models.predictor, need_tokens=False).story_norms]
    )
    assert norms["adam"] == pytest.approx([float(reference.mean())] * 6, rel=1e-5)
    assert norms["sgd"] == pytest.approx([0.5] * 4, rel=1e-5)
    assert len(set(norms["mse"])) > 1  # norm = "none": z moves freely


def test_a_diverging_row_fails_alone(models):
    experiments = (
        MIXED[0],
        Experiment("boom", "I like cheese.", lr=1e38, steps=5, optimizer="sgd", norm="none"),
        MIXED[3],
    )
    results, _, finished = run(models, experiments)
    by_name = {r["name"]: r for r in results}
    assert by_name["boom"]["status"] == "failed"
    assert "non-finite" in by_name["boom"]["error"]
    assert by_name["boom"]["final_sim"] is None and by_name["boom"]["trajectory"]  # what it had before diverging
    assert by_name["adam"]["status"] == by_name["mse"]["status"] == "done"
    alone = run(models, [MIXED[0]])[0][0]
    assert by_name["adam"]["final_sim"] == pytest.approx(alone["final_sim"], abs=1e-5)
    assert [r["name"] for r in finished][0] == "boom"  # reported the moment it failed


def test_an_exception_fails_the_batch_with_one_line(models):
    story = Story("nothing-before", LILY_STORY, optimize=1, targets=(0,))  # target 0 cannot be predicted
    results, _, _ = run(models, MIXED[:2], story)
    assert [r["status"] for r in results] == ["failed", "failed"]
    assert "target 0" in results[0]["error"] and "\n" not in results[0]["error"]


def test_events_and_end_of_run_measures(models):
    results, events, _ = run(models, MIXED[:1])
    row = results[0]
    started = [e for e in events if isinstance(e, ExperimentStarted)]
    assert len(started) == 1 and started[0].init_sim == row["init_sim"] == row["trajectory"][0]
    assert started[0].oracle_sim == row["oracle_sim"] and started[0].targets == tuple(LILY_STORY[1:3])
    steps = [e.step for e in events if isinstance(e, Step)]
    assert steps == [1, 2, 3, 4, 5, 6]
    decoded = [e for e in events if isinstance(e, Decoded)]
    assert [e.step for e in decoded] == [0, 3, 6]
    assert decoded[-1].z_text == row["decoded_z"] and list(decoded[-1].predictions) == row["decoded_predictions"]
    assert row["exact_match"] == [p == t for p, t in zip(row["decoded_predictions"], row["targets"])]
    assert len(row["decoded_predictions"]) == len(row["targets"]) == 2
    for key in ("init_sim", "final_sim", "best_sim", "improvement", "oracle_sim", "roundtrip_sim"):
        assert isinstance(row[key], float), key
    assert row["improvement"] == pytest.approx(row["final_sim"] - row["init_sim"])
    assert row["best_sim"] == max(row["trajectory"]) == row["trajectory"][row["best_step"]]
    assert len(row["z"]) == models.space.dim


def test_oracle_equals_the_full_story_through_the_predictor(models):
    """The truncated sequence (context, begin, z in place) predicts exactly what the whole story does."""
    story = Story(
        "ctx", LILY_STORY, optimize=1, targets=(2, 4), context=("The dog ran to the park and played with a red ball.",)
    )
    problem = build_problem(story, models.space, models.predictor, need_tokens=False)
    with torch.inference_mode():
        mine = predict(models.predictor, problem, problem.oracle.unsqueeze(0))[0]
        full = models.space.encode(list(story.context) + list(LILY_STORY))
        reference = models.predictor(full.unsqueeze(0))[0]
    torch.testing.assert_close(mine, reference[[1 + 2 - 1, 1 + 4 - 1]].float(), rtol=1e-5, atol=1e-6)


def test_add_begin_predictors_get_the_begin_sentence_first(models, tiny_dir, tmp_path):
    from engine.mini.tiny import write_tiny_predictor
    from engine.models.predictor import load_predictor

    predictor = load_predictor(write_tiny_predictor(tmp_path / "p", add_begin=True))
    story = Story("first", LILY_STORY, optimize=0, targets=(0, 1))  # target 0 is predicted from BEGIN_TEXT
    problem = build_problem(story, models.space, predictor, need_tokens=False)
    torch.testing.assert_close(problem.prefix, models.space.encode([BEGIN_TEXT]))
    assert problem.positions.tolist() == [0, 1]
    with_context = Story("ctx", LILY_STORY, targets=(1,), context=(BEGIN_TEXT,))
    assert build_problem(with_context, models.space, predictor, need_tokens=False).prefix.shape[0] == 1


def test_identical_rows_decode_once_to_the_same_text(models):
    from engine.scoring.scorer import decode_unique

    calls = []
    space = models.space
    vectors = space.encode(["I like cheese.", "There was a boy named Tom.", "I like cheese."])
    vectors = vectors + 0.3 * vectors.norm(dim=1, keepdim=True) * torch.randn(
        vectors.shape, generator=torch.Generator().manual_seed(1)
    )
    vectors[2] = vectors[0]

    class Counting:
        def decode(self, v, **kwargs):
            calls.append(v.shape[0])
            return space.decode(v, **kwargs)

    texts = decode_unique(Counting(), vectors, 1)
    assert calls == [2]
    assert texts == [space.decode(v[None], max_len=64)[0] for v in vectors]


@pytest.mark.parametrize("kv_heads", [4, 2])
@pytest.mark.parametrize("length", [1, 2, 5])
def test_the_lean_forward_is_the_predictor(kv_heads, length):
    from engine.models.fast_llama import lean_forward
    from engine.models.predictor import PredictorConfig, SonarLLMPredictor

    torch.manual_seed(0)
    llama = {
        "hidden_size": 32,
        "intermediate_size": 48,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": kv_heads,
        "max_position_embeddings": 16,
        "rms_norm_eps": 1e-5,
        "rope_theta": 500.0,
    }
    predictor = SonarLLMPredictor(PredictorConfig(llama, 24)).eval().requires_grad_(False)
    lean = lean_forward(predictor)
    assert lean is not None
    x = torch.randn(3, length, 24, requires_grad=True)
    ours, theirs = lean(x), predictor(x)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)
    torch.testing.assert_close(
        torch.autograd.grad(ours.sum(), x)[0], torch.autograd.grad(theirs.sum(), x)[0], rtol=0, atol=1e-6
    )
    with torch.inference_mode():  # first use under inference mode must not poison later autograd use
        lean(torch.randn(2, length + 1, 24))
    assert torch.autograd.grad(lean(x).sum(), x)[0].isfinite().all()


def test_the_lean_forward_declines_configs_it_does_not_cover():
    from engine.models.fast_llama import lean_forward
    from engine.models.predictor import PredictorConfig, SonarLLMPredictor

    llama = {
        "hidden_size": 16,
        "intermediate_size": 32,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "attention_bias": True,
    }
    assert lean_forward(SonarLLMPredictor(PredictorConfig(llama, 8))) is None


def test_the_lean_forward_matches_the_shipped_predictor_bit_for_bit():
    from engine.mini import PREDICTOR_DIR
    from engine.models.fast_llama import lean_forward
    from engine.models.predictor import load_predictor

    predictor = load_predictor(PREDICTOR_DIR)
    x = torch.randn(8, 2, predictor.config.embed_dim, generator=torch.Generator().manual_seed(0)) * 0.2
    torch.testing.assert_close(lean_forward(predictor)(x), predictor(x), rtol=0, atol=1e-6)
