"""Results a researcher can trust: best by the honest score, repeats over seeds, each objective's own number,
the best z kept, settings shown only where used, live edits never shown as if applied (tiny real models)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engine import events as ev
from engine.methods.token_swap import TokenSwapOptions
from engine.results import best_by_story
from engine.run.backend import load_models
from engine.run.runner import run_queue
from engine.run.steering import Steering
from engine.rundir import report
from engine.rundir.columns import UNUSED, choose
from engine.spec import Experiment, Objective, Spec, SpecError, Story, parse_spec

LILY = (
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside with her toys.",
    "One day, she saw a big tree in the sky.",
)


@pytest.fixture(scope="module")
def models(tiny_backend):
    return load_models(tiny_backend)


def spec_of(backend, *experiments: Experiment, text: str = "") -> Spec:
    return Spec(Path("q.toml"), backend, {"lily": Story("lily", LILY)}, tuple(experiments), text)


def test_best_is_the_best_real_sentence_unless_rank_by_says_the_continuous_z() -> None:
    rows = [
        {"name": "grad", "story": "lily", "status": "done", "final_sim": 0.95, "text_sim": 0.20},
        {"name": "swap", "story": "lily", "status": "done", "final_sim": 0.70, "text_sim": 0.82},
        {"name": "tom", "story": "tom", "status": "done", "final_sim": 0.50, "text_sim": 0.40},
        {"name": "fail", "story": "lily", "status": "failed", "final_sim": 0.99, "text_sim": 0.99},
    ]
    assert best_by_story(rows) == {"lily": "swap", "tom": "tom"}
    assert best_by_story(rows, "final_sim") == {"lily": "grad", "tom": "tom"}
    run = report.Run("r", {"experiments": rows, "rank_by": "text_sim", "best": best_by_story(rows)})
    assert report.best_lines(run, markdown=False)[0].startswith("Best for story lily: swap")
    assert "ranked by Text Sim" in report.best_lines(run, markdown=False)[0]
    old = report.Run("r", {"experiments": rows})  # a run from before rank_by ranked by the final similarity
    assert old.rank_by == "final_sim" and old.best == {"grad", "tom"}


CONFIG = """{top}
[stories.lily]
sentences = ["A girl named Lily.", "She loved to play."]

[[experiments]]
name = "a"
init = "I like cheese."
{extra}
"""


def parse(top: str = "", extra: str = "") -> Spec:
    return parse_spec(CONFIG.format(top=top, extra=extra), "q.toml")


def test_rank_by_is_read_and_checked() -> None:
    assert parse().rank_by == "text_sim"
    assert parse('rank_by = "final_sim"').rank_by == "final_sim"
    with pytest.raises(SpecError, match=r'rank_by: must be one of "text_sim", "final_sim"'):
        parse('rank_by = "oracle"')


def test_repeat_and_seeds_run_an_experiment_once_per_seed_named_so_they_group() -> None:
    spec = parse(extra="repeat = 3\nseed = 5")
    assert [(e.name, e.seed, e.repeat_of) for e in spec.experiments] == [
        ("a@5", 5, "a"),
        ("a@6", 6, "a"),
        ("a@7", 7, "a"),
    ]
    assert [e.name for e in parse(extra="seeds = [0, 42]").experiments] == ["a@0", "a@42"]
    assert [e.name for e in parse(extra="repeat = 1").experiments] == ["a"]
    for extra, message in (
        ("repeat = 2\nseeds = [1, 2]", "give repeat or seeds, not both"),
        ("seeds = [1, 1]", "a seed is listed twice"),
        ("seeds = []", "must be a non-empty array of seeds"),
        ("repeat = 0", "must be >= 1"),
        ("repeat = 1001", "must be <= 1_000"),
    ):
        with pytest.raises(SpecError, match=message):
            parse(extra=extra)


def test_repeats_with_init_noise_start_apart_and_each_seed_is_reproducible(tiny_backend, models) -> None:
    base = Experiment("a", "I like cheese.", steps=3, decode_every=3, repeat_of="a")
    noisy = dataclasses.replace(base.options, init_noise=0.5)
    rows = [dataclasses.replace(base, name=f"a@{s}", seed=s, options=noisy) for s in (0, 1)]
    first = run_queue(spec_of(tiny_backend, *rows), lambda e: None, models=models).experiments
    again = run_queue(spec_of(tiny_backend, rows[1]), lambda e: None, models=models).experiments
    assert first[0]["trajectory"] != first[1]["trajectory"]  # different seeds, different starts
    assert again[0]["trajectory"] == first[1]["trajectory"]  # a seed gives its numbers, alone or in a batch
    plain = run_queue(spec_of(tiny_backend, base), lambda e: None, models=models).experiments[0]
    assert plain["trajectory"][0] == plain["init_sim"] != first[0]["trajectory"][0]


def test_groups_give_n_and_mean_and_std_per_story_and_group() -> None:
    rows = [
        {
            "name": "a@0",
            "repeat_of": "a",
            "story": "lily",
            "status": "done",
            "text_sim": 0.5,
            "final_sim": 0.9,
            "oracle_sim": 0.7,
            "method": "gradient",
        },
        {
            "name": "a@1",
            "repeat_of": "a",
            "story": "lily",
            "status": "done",
            "text_sim": 0.7,
            "final_sim": 0.9,
            "oracle_sim": 0.7,
            "method": "gradient",
        },
        {
            "name": "b",
            "story": "lily",
            "status": "done",
            "text_sim": 0.8,
            "final_sim": 0.6,
            "oracle_sim": 0.7,
            "method": "token_swap",
        },
        {"name": "c", "story": "lily", "status": "failed", "method": "gradient"},
    ]
    run = report.Run("r", {"experiments": rows})
    by_experiment = {g["experiment"]: g for g in report.groups([run], "experiment")}
    assert by_experiment["a"]["n"] == 2 and by_experiment["a"]["text_sim_mean"] == pytest.approx(0.6)
    assert by_experiment["a"]["text_sim_std"] == pytest.approx(0.1414, abs=1e-4)
    assert by_experiment["a"]["oracle_gap_mean"] == pytest.approx(-0.1)
    assert by_experiment["b"]["n"] == 1 and by_experiment["b"]["text_sim_std"] == 0.0
    by_method = {g["method"]: g["n"] for g in report.groups([run], "method")}
    assert by_method == {"gradient": 2, "token_swap": 1}  # the failed row counts nowhere
    table = report.format_groups([run], "experiment")
    assert "0.600 ± 0.141" in table and table.splitlines()[0].split()[:2] == ["Experiment", "n"]


def test_each_objective_reports_its_own_number_at_start_end_and_best(tiny_backend, models) -> None:
    ce = Experiment("ce", "I like cheese.", steps=4, decode_every=4, objective=Objective((("decoder_ce", 1.0),)))
    row = run_queue(spec_of(tiny_backend, ce), lambda e: None, models=models).experiments[0]
    assert row["init_loss"] > row["best_loss"] and row["final_loss"] >= row["best_loss"]  # it went down
    assert row["oracle_loss"] is not None and row["objective"] == "decoder_ce"
    headers = [c.header for c in choose([row])]
    assert headers[headers.index("Improvement") + 1 : headers.index("Oracle")] == [
        "Init Loss",
        "Final Loss",
        "Best Loss",
    ]
    cosine = run_queue(
        spec_of(tiny_backend, dataclasses.replace(ce, objective=Objective())), lambda e: None, models=models
    ).experiments[0]
    assert cosine["init_loss"] == pytest.approx(-cosine["init_sim"], abs=1e-6)  # cosine's loss is -sim
    assert "Init Loss" not in [c.header for c in choose([cosine])]


def test_the_best_z_is_kept_beside_the_final_one(tiny_backend, models, tmp_path) -> None:
    from safetensors.numpy import load_file

    from engine.run.session import Session
    from engine.scoring.problem import build_problem, fast_forward
    from engine.scoring.scorer import Scorer

    experiment = Experiment("a", "I like cheese.", lr=3.0, steps=12, decode_every=12)
    spec = spec_of(tiny_backend, experiment, text='[stories.lily]\nsentences = ["x.", "y."]\n')
    session = Session.from_spec(spec, tmp_path)
    session.models = models
    session.run()
    row = session.store.rows()[0]
    final = load_file(str(session.run_dir / "embeddings.safetensors"))["a"]
    best = load_file(str(session.run_dir / "embeddings.best.safetensors"))["a"]
    problem = build_problem(spec.stories["lily"], models.space, models.predictor, need_tokens=False)
    scorer = Scorer(problem, models.space, fast_forward(models.predictor))
    import torch

    sims = scorer.score(torch.tensor([final, best]))[0].tolist()
    assert sims[0] == pytest.approx(row["final_sim"], abs=1e-5) and sims[1] == pytest.approx(row["best_sim"], abs=1e-5)
    assert row["best_step"] != row["steps_done"] and sims[1] > sims[0]  # lr 3 overshoots: the best is not the last


def test_a_table_blanks_what_a_method_does_not_use_and_says_what_ran() -> None:
    rows = [
        {
            "name": "search",
            "method": "bank_search",
            "lr": 0.02,
            "steps": 80,
            "init_text": "I like cheese.",
            "init_sim": 0.05,
            "improvement": 0.45,
            "status": "done",
            "steps_done": 3,
        },
        {
            "name": "swap",
            "method": "token_swap",
            "lr": 0.02,
            "steps": 80,
            "init_text": "Once upon a time.",
            "status": "done",
            "steps_done": 80,
            "init_sim": 0.1,
        },
        {
            "name": "early",
            "method": "gradient",
            "lr": 0.02,
            "steps": 80,
            "status": "done",
            "steps_done": 10,
            "init_text": "I like cheese.",
            "init_sim": 0.1,
        },
    ]
    columns = choose(rows)
    cells = {r["name"]: report.cells(columns, r) for r in rows}
    assert cells["search"]["LR"] == cells["search"]["Steps"] == cells["search"]["Init Sim"] == UNUSED
    assert cells["search"]["Improvement"] == cells["search"]["Init Text"] == UNUSED
    assert cells["swap"]["LR"] == UNUSED and cells["swap"]["Steps"] == "80" and cells["swap"]["Init Sim"] == "0.100"
    assert cells["early"]["Steps"] == "10/80" and cells["early"]["LR"] == "0.02"


def test_a_live_edit_that_would_change_a_running_experiment_is_refused_whole(tiny_backend, models) -> None:
    """What runs is what the screen and config.toml say: the edit is refused, nothing of it applies."""
    a = Experiment("a", "I like cheese.", lr=0.01, steps=6, decode_every=6)
    steering = Steering()
    edited = spec_of(tiny_backend, dataclasses.replace(a, lr=0.1), Experiment("new", "Hi.", steps=2))
    added = spec_of(tiny_backend, a, Experiment("new", "Hi.", steps=2))
    seen: list[ev.Event] = []

    def hook(event: ev.Event) -> None:
        seen.append(event)
        if isinstance(event, ev.Step) and event.name == "a" and event.step == 2:
            steering.replace_spec(edited)
        if isinstance(event, ev.ConfigRejected):
            steering.replace_spec(added)  # the same edit without touching a: applied

    result = run_queue(spec_of(tiny_backend, a), hook, steering, models=models)
    rejected = [e for e in seen if isinstance(e, ev.ConfigRejected)]
    assert len(rejected) == 1 and "a is running: its lr (0.01 -> 0.1) cannot change" in rejected[0].error
    assert [r["name"] for r in result.experiments] == ["a", "new"]
    assert result.experiments[0]["lr"] == 0.01 and all(r["status"] == "done" for r in result.experiments)
    assert len([e for e in seen if isinstance(e, ev.ConfigApplied)]) == 1


def test_a_story_the_models_do_not_know_is_said_once(tmp_path) -> None:
    """On the shipped mini models the Lily story comes back from encode -> decode; words outside its world do not."""
    from engine.spec import Backend

    backend = Backend(device="cpu")
    stories = {
        "lily": Story("lily", LILY),
        "odd": Story("odd", ("Quantum chromodynamics binds quarks.", "Gluons mediate the strong force.")),
    }
    experiments = (
        Experiment("a", "I like cheese.", steps=1, decode_every=1),
        Experiment("b", "I like cheese.", story="odd", steps=1, decode_every=1),
        Experiment("c", "Hi.", story="odd", steps=1, decode_every=1, method="token_swap", options=TokenSwapOptions()),
    )  # c runs in a batch of its own (another method): the story is still checked once
    seen: list[ev.Event] = []
    run_queue(Spec(Path("q.toml"), backend, stories, experiments), seen.append)
    checks = {e.story: e for e in seen if isinstance(e, ev.StoryChecked)}
    assert len([e for e in seen if isinstance(e, ev.StoryChecked)]) == 2  # once per story, not per batch
    assert not checks["lily"].out_of_domain and checks["lily"].exact == len(LILY)
    assert checks["odd"].out_of_domain and checks["odd"].mean_sim < checks["lily"].mean_sim
    assert json.loads(json.dumps(checks["odd"].to_json()))["type"] == "story_checked"
