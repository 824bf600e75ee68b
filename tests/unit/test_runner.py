"""The queue around the loop: batching, controls, resume and backend loading (tiny real models)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from engine import events as ev
from engine.mini.corpus import LILY_STORY
from engine.run.backend import load_models
from engine.run.runner import RunResult, run_queue
from engine.run.steering import Steering
from engine.rundir.fold import RunProgress
from engine.spec import Experiment, Spec, Story

# Every results field the engine fills ("best" compares rows: the store marks it), plus z and best_z.
RESULT_KEYS = {
    "name",
    "text_nll",
    "oracle_nll",
    "front",
    "repeat_of",
    "init_loss",
    "final_loss",
    "best_loss",
    "oracle_loss",
    "best_z",
    "init_text",
    "story",
    "method",
    "lr",
    "steps",
    "steps_done",
    "optimizer",
    "objective",
    "norm",
    "status",
    "init_sim",
    "final_sim",
    "best_sim",
    "best_step",
    "improvement",
    "oracle_sim",
    "roundtrip_sim",
    "decoded_z",
    "decoded_predictions",
    "targets",
    "exact_match",
    "seconds",
    "error",
    "trajectory",
    "z",
    "decode_every",
    "beam_size",
    "seed",
    "bank",
    "options",
    "optimize",
    "context",
    "text",
    "text_sim",
    "text_exact_match",
    "scored",
    "top",
    "search_trace",
}
STORIES = {
    "lily": Story("lily", LILY_STORY, optimize=0, targets=(1,)),
    "later": Story("later", LILY_STORY, optimize=2, targets=(3, 4)),
}


def make_spec(backend, *experiments: Experiment) -> Spec:
    return Spec(Path("experiments.toml"), backend, STORIES, tuple(experiments))


QUEUE = (
    Experiment("a", "I like cheese.", lr=0.02, steps=4),
    Experiment("b", "There was a boy named Tom.", lr=0.05, steps=3, story="later"),
    Experiment("c", "I like cheese.", lr=0.005, steps=5),
)


@pytest.fixture(scope="module")
def models(tiny_backend):
    return load_models(tiny_backend)


class Recorder:
    """Collects events; ``on`` runs a hook on each one (the engine thread calls it between steps)."""

    def __init__(self, hook=None):
        self.events: list[ev.Event] = []
        self.hook = hook

    def __call__(self, event: ev.Event) -> None:
        self.events.append(event)
        if self.hook:
            self.hook(event)

    def of(self, cls):
        return [e for e in self.events if isinstance(e, cls)]


def test_load_models_is_cached_per_backend(tiny_backend, models):
    assert load_models(tiny_backend) is models
    assert models.corpus_norms.numel() > 0  # the mini corpus sample joins the story in the "reference" norm


def test_a_queue_runs_in_batches_per_story(tiny_backend, models):
    rec = Recorder()
    result = run_queue(make_spec(tiny_backend, *QUEUE), rec, models=models)
    assert isinstance(result, RunResult) and result.status == "done"
    assert [r["name"] for r in result.experiments] == ["a", "b", "c"]
    for row in result.experiments:
        assert set(row) == RESULT_KEYS and row["status"] == "done" and row["error"] is None
    # best per story: "a" and "c" share a story and compete; "b" is alone on its own
    ac = max((r for r in result.experiments if r["name"] in "ac"), key=lambda r: r["final_sim"])["name"]
    assert result.best == {"lily": ac, "later": "b"}
    started = {e.name: e.batch for e in rec.of(ev.ExperimentStarted)}
    assert started == {"a": ("a", "c"), "c": ("a", "c"), "b": ("b",)}
    assert isinstance(rec.events[0], ev.QueueChanged) and rec.events[0].statuses == ("pending",) * 3
    assert not rec.of(ev.RunFinished)  # the session announces the end, with the run directory
    assert len(rec.of(ev.BackendReady)) == 1 and rec.of(ev.BackendReady)[0].reference_norm > 0
    assert len(rec.of(ev.QueueChanged)) == 1  # the order, once; each start and finish is its own small event
    assert [e.names for e in rec.of(ev.BatchStarted)] == [("a", "c"), ("b",)]
    progress = RunProgress()
    for event in rec.events:
        progress.apply(event)
    assert [x.status for x in progress.experiments.values()] == ["done"] * 3
    assert [e.to_json()["type"] for e in rec.of(ev.ExperimentFinished)] == ["experiment_finished"] * 3


def test_stop_mid_run_keeps_trajectories_as_interrupted(tiny_backend, models):
    steps = []
    steering = Steering()

    def hook(event):
        if isinstance(event, ev.Step):
            steps.append(event)
            if len(steps) >= 4:
                steering.request_stop()

    rec = Recorder(hook)
    result = run_queue(make_spec(tiny_backend, *QUEUE), rec, steering, models=models)
    rows = {r["name"]: r for r in result.experiments}
    assert result.status == "interrupted"
    assert rows["a"]["status"] == rows["c"]["status"] == "interrupted"
    assert rows["a"]["steps_done"] == 2 and len(rows["a"]["trajectory"]) == 3 and rows["a"]["z"] is not None
    assert rows["b"]["status"] == "pending" and rows["b"]["trajectory"] == []
    assert result.best == {}


def test_skip_ends_the_running_batch_and_the_queue_goes_on(tiny_backend, models):
    control = Steering()
    rec = Recorder(
        lambda e: control.request_skip() if isinstance(e, ev.Step) and e.step == 2 and e.name == "a" else None
    )
    result = run_queue(make_spec(tiny_backend, *QUEUE), rec, control, models=models)
    rows = {r["name"]: r for r in result.experiments}
    assert rows["a"]["status"] == rows["c"]["status"] == "skipped"
    assert rows["a"]["steps_done"] == 2
    assert rows["b"]["status"] == "done" and result.status == "done"


def test_skip_by_name_ends_that_experiment_only_and_skips_a_pending_one(tiny_backend, models):
    control = Steering()

    def hook(event):
        if isinstance(event, ev.Step) and event.step == 2 and event.name == "a":
            control.request_skip("a")
            control.request_skip("b")  # pending: it never runs

    rec = Recorder(hook)
    result = run_queue(make_spec(tiny_backend, *QUEUE), rec, control, models=models)
    rows = {r["name"]: r for r in result.experiments}
    assert rows["a"]["status"] == "skipped" and rows["a"]["steps_done"] == 2
    assert rows["c"]["status"] == "done" and rows["c"]["steps_done"] == rows["c"]["steps"]
    assert rows["b"]["status"] == "skipped" and rows["b"]["steps_done"] == 0
    assert not any(e.name == "b" for e in rec.of(ev.ExperimentStarted))
    assert result.status == "done" and result.best == {"lily": "c"}


def test_pause_waits_and_announces(tiny_backend, models):
    control = Steering()

    def hook(event):
        if isinstance(event, ev.Step) and event.step == 1 and event.name == "a":
            control.pause()
        if isinstance(event, ev.Paused) and event.paused:
            assert control.paused
            control.resume()  # the consumer resumes; the engine wakes on its next wait

    rec = Recorder(hook)
    result = run_queue(make_spec(tiny_backend, *QUEUE[:1]), rec, control, models=models)
    assert [e.paused for e in rec.of(ev.Paused)] == [True, False]
    assert result.status == "done" and result.experiments[0]["steps_done"] == 4


def test_a_reload_while_paused_shows_before_resuming(tiny_backend, models):
    import threading

    control = Steering()
    grown = make_spec(tiny_backend, *QUEUE[:1], Experiment("x", "I like cheese.", steps=2))
    safety = threading.Timer(30, control.resume)  # a broken engine fails the test instead of hanging it

    def hook(event):
        if isinstance(event, ev.Step) and event.step == 1 and event.name == "a":
            control.pause()
        elif isinstance(event, ev.Paused) and event.paused:
            control.replace_spec(grown)
            safety.start()
        elif isinstance(event, ev.QueueChanged) and "x" in event.names and control.paused:
            control.resume()

    rec = Recorder(hook)
    result = run_queue(make_spec(tiny_backend, *QUEUE[:1]), rec, control, models=models)
    safety.cancel()
    kinds = [
        (type(e).__name__, getattr(e, "names", None)) for e in rec.events if isinstance(e, (ev.Paused, ev.QueueChanged))
    ]
    grown_at = kinds.index(("QueueChanged", ("a", "x")))
    assert kinds.index(("Paused", None)) < grown_at < [i for i, k in enumerate(kinds) if k[0] == "Paused"][1]
    assert [r["status"] for r in result.experiments] == ["done", "done"]


def test_stop_while_paused_wakes_and_interrupts(tiny_backend, models):
    control = Steering()

    def hook(event):
        if isinstance(event, ev.Step) and event.step == 1:
            control.pause()
        if isinstance(event, ev.Paused) and event.paused:
            control.request_stop()

    result = run_queue(make_spec(tiny_backend, *QUEUE[:1]), Recorder(hook), control, models=models)
    assert result.status == "interrupted" and result.experiments[0]["steps_done"] == 1


def test_live_reload_changes_only_pending_experiments(tiny_backend, models):
    control = Steering()
    edited = make_spec(
        tiny_backend,
        QUEUE[0],
        dataclasses.replace(QUEUE[1], lr=0.001, steps=2),  # pending, edited
        QUEUE[2],  # "c" runs with "a": it stays as it is (an edit that changed or dropped it would be refused)
        Experiment("d", "There was a boy named Tom.", steps=2, story="later"),  # new
    )
    without_b = make_spec(tiny_backend, QUEUE[0], QUEUE[2])  # a later reload removes pending "b"
    reloads = iter([edited])

    def hook(event):
        if isinstance(event, ev.Step) and event.step == 1 and event.name == "a":
            spec = next(reloads, None)
            if spec is not None:
                control.replace_spec(spec)

    rec = Recorder(hook)
    result = run_queue(make_spec(tiny_backend, *QUEUE), rec, control, models=models)
    rows = {r["name"]: r for r in result.experiments}
    assert [r["name"] for r in result.experiments] == ["a", "b", "c", "d"]
    assert rows["c"]["status"] == "done" and rows["c"]["steps_done"] == 5  # running: untouched
    assert rows["b"]["lr"] == 0.001 and rows["b"]["steps_done"] == 2
    assert rows["d"]["status"] == "done"
    assert ("a", "b", "c", "d") in [e.names for e in rec.of(ev.QueueChanged)]
    assert {e.name: e.batch for e in rec.of(ev.ExperimentStarted)}["b"] == ("b", "d")

    control = Steering()
    rec = Recorder(lambda e: control.replace_spec(without_b) if isinstance(e, ev.ExperimentStarted) else None)
    result = run_queue(make_spec(tiny_backend, *QUEUE), rec, control, models=models)
    assert [r["name"] for r in result.experiments] == ["a", "c"]  # pending "b" left the queue


def test_completed_results_are_kept_and_not_rerun(tiny_backend, models):
    first = run_queue(make_spec(tiny_backend, *QUEUE[:2]), Recorder(), models=models)
    earlier = {"a": dict(first.experiments[0], seconds=123.0)}
    rec = Recorder()
    result = run_queue(make_spec(tiny_backend, *QUEUE), rec, completed=earlier, models=models)
    assert result.experiments[0] == earlier["a"]
    assert rec.events[0].statuses == ("done", "pending", "pending")
    assert "a" not in {e.name for e in rec.of(ev.ExperimentStarted)}
    assert {e.name: e.batch for e in rec.of(ev.ExperimentStarted)}["c"] == ("c",)
    # a resumed run with a different batch composition ends where the first did
    assert result.experiments[1]["final_sim"] == pytest.approx(first.experiments[1]["final_sim"], abs=1e-5)


def test_a_backend_that_cannot_load_fails_the_run_and_leaves_every_experiment_pending(tiny_backend):
    """Nothing ran, so nothing failed: the experiments stay pending, and --resume tries again once it is fixed."""
    backend = dataclasses.replace(tiny_backend, predictor="/nonexistent/predictor")
    rec = Recorder()
    result = run_queue(make_spec(backend, *QUEUE), rec)
    assert result.status == "failed" and result.best == {}
    assert [r["status"] for r in result.experiments] == ["pending"] * 3
    assert [r["error"] for r in result.experiments] == [None] * 3
    assert len(rec.of(ev.BackendFailed)) == 1 and "does not exist" in rec.of(ev.BackendFailed)[0].error
    assert not rec.of(ev.ExperimentFinished)


def test_the_real_sonar_card_names_run_the_same_engine(tmp_path, tiny_dir):
    """kind = "sonar" with the real card names, resolved through `@user` overlays to tiny local files."""
    import os
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[2]
    overlay = tmp_path / "overlay"
    overlay_names = ["text_sonar_basic_encoder@user", "text_sonar_basic_decoder@user"]
    subprocess.run(
        [sys.executable, "-m", "engine.mini.tiny", str(overlay), "--names", *overlay_names],
        check=True,
        cwd=repo,
        capture_output=True,
    )
    run = f"""
import torch; torch.set_num_threads(1)
from pathlib import Path
from engine.run.runner import run_queue
from engine.spec import Backend, Experiment, Spec, Story
from engine import events as ev
backend = Backend(kind="sonar", encoder="text_sonar_basic_encoder", decoder="text_sonar_basic_decoder",
                  tokenizer="text_sonar_basic_encoder", predictor={str(tiny_dir / "predictor")!r}, device="auto")
story = Story("s", ("I like cheese.", "There was a boy named Tom."), targets=(1,))
spec = Spec(Path("x.toml"), backend, {{"s": story}}, (Experiment("a", "Begin of text.", story="s", steps=3),))
seen = []
result = run_queue(spec, seen.append)
ready = [e for e in seen if isinstance(e, ev.BackendReady)][0]
print(result.status, ready.backend, ready.device, ready.dim, result.experiments[0]["steps_done"])
"""
    env = {**os.environ, "FAIRSEQ2_USER_ASSET_DIR": str(overlay)}
    out = subprocess.run([sys.executable, "-c", run], cwd=repo, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    device = "cuda" if __import__("torch").cuda.is_available() else "cpu"
    assert out.stdout.split() == ["done", "sonar", device, "32", "3"]


def test_a_predictor_of_another_width_is_a_backend_error(tiny_backend, tmp_path):
    from engine.mini.tiny import write_tiny_predictor

    narrow = write_tiny_predictor(tmp_path / "narrow", embed_dim=16)
    rec = Recorder()
    result = run_queue(make_spec(dataclasses.replace(tiny_backend, predictor=str(narrow)), *QUEUE[:1]), rec)
    assert result.status == "failed"
    assert rec.of(ev.BackendFailed)[0].error.endswith("predictor embed_dim is 16 but tiny_encoder makes 32-d vectors")
