"""The ray executor on a real private Ray cluster (one for the module) with the tiny real models: no mocks.

The cluster is started by the executor's own code, so its sockets are the ones
a run opens; each test then runs a queue on fresh workers (two, one CPU each).
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from pathlib import Path

import pytest

from engine import events as ev
from engine.mini.corpus import LILY_STORY
from engine.run.backend import load_models
from engine.run.runner import run_queue
from engine.run.steering import Steering
from engine.spec import Executor, Experiment, Spec, Story

psutil = pytest.importorskip("psutil")  # a dependency of ray

STORIES = {
    "lily": Story("lily", LILY_STORY, optimize=0, targets=(1,)),
    "later": Story("later", LILY_STORY, optimize=2, targets=(3, 4)),
}
QUEUE = (
    Experiment("a", "I like cheese.", lr=0.02, steps=6, decode_every=3),
    Experiment("b", "There was a boy named Tom.", lr=0.05, steps=5, story="later", decode_every=3),
    Experiment("c", "I like cheese.", lr=0.005, steps=7, decode_every=3),
)
TWO_WORKERS = Executor(kind="ray", workers=2)
AUTH_TOKEN = Path.home() / ".ray" / "auth_token"
TOKEN_BEFORE = AUTH_TOKEN.exists()
LOOPBACK = {"127.0.0.1", "::1", "::ffff:127.0.0.1"}


@pytest.fixture(scope="module")
def cluster():
    from engine.run.executors.ray import start_cluster, stop_cluster

    temp_dir = start_cluster(TWO_WORKERS)
    yield temp_dir
    stop_cluster(temp_dir, None)


def spec_of(backend, experiments=QUEUE, executor=TWO_WORKERS) -> Spec:
    return Spec(Path("experiments.toml"), backend, STORIES, tuple(experiments), executor=executor)


class Recorder(list):
    """The events of a run, in order; ``hook`` sees each one first (in the engine thread)."""

    def __init__(self, hook=None):
        super().__init__()
        self.hook = hook or (lambda event: None)

    def __call__(self, event: ev.Event) -> None:
        self.hook(event)
        self.append(event)

    def of(self, cls):
        return [e for e in self if isinstance(e, cls)]


class KillOnFirstStep:
    """Kills (SIGKILL) the worker process running ``name`` at that experiment's first step, once."""

    def __init__(self, name: str):
        self.name = name
        self.pids: dict[str, int] = {}
        self.batches: dict[str, tuple[str, ...]] = {}
        self.killed: str | None = None

    def __call__(self, event: ev.Event) -> None:
        if isinstance(event, ev.WorkerStarted):
            self.pids[event.worker] = event.pid
        elif isinstance(event, ev.BatchAssigned):
            self.batches[event.worker] = event.batch
        elif isinstance(event, ev.Step) and event.name == self.name and self.killed is None:
            self.killed = next(w for w, batch in self.batches.items() if self.name in batch)
            os.kill(self.pids[self.killed], signal.SIGKILL)


def close(a: dict, b: dict) -> None:
    assert a["status"] == b["status"] == "done", (a["name"], a["error"], b["error"])
    assert a["final_sim"] == pytest.approx(b["final_sim"], abs=1e-5)
    assert a["trajectory"] == pytest.approx(b["trajectory"], abs=1e-5)
    assert a["z"] == pytest.approx(b["z"], abs=1e-5)
    assert a["decoded_z"] == b["decoded_z"]


@pytest.fixture(scope="module")
def inline_rows(tiny_backend):
    result = run_queue(spec_of(tiny_backend, executor=Executor()), lambda e: None, models=load_models(tiny_backend))
    return {row["name"]: row for row in result.experiments}


def test_the_private_cluster_listens_on_loopback_only(cluster):
    listening = []
    for process in psutil.Process().children(recursive=True):
        try:
            listening += [(process.name(), c.laddr.ip) for c in process.connections("inet") if c.status == "LISTEN"]
        except psutil.NoSuchProcess:
            continue
    assert any(name == "gcs_server" for name, _ in listening), listening
    assert [(name, ip) for name, ip in listening if ip not in LOOPBACK] == []
    assert Path(cluster).stat().st_mode & 0o077 == 0  # session files in a private temp dir
    assert AUTH_TOKEN.exists() == TOKEN_BEFORE  # the token stays in the environment, not in ~/.ray


def resume_when_both_are_up(control: Steering):
    """Pause holds the batches back until both workers are up, so each worker gets one."""

    def hook(event: ev.Event) -> None:
        if isinstance(event, ev.WorkerStarted) and event.workers == 2:
            control.resume()

    control.pause()
    return hook


def test_two_stories_on_two_workers_give_the_inline_results(cluster, tiny_backend, inline_rows, tmp_path):
    control = Steering()
    rec = Recorder(resume_when_both_are_up(control))
    result = run_queue(spec_of(tiny_backend), rec, control, log_dir=tmp_path)
    assert result.status == "done"
    assert [e.paused for e in rec.of(ev.Paused)] == [True, False]
    fractions = [e.fraction for e in rec.of(ev.BackendLoading)]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # the loading bar never goes back
    for row in result.experiments:
        close(row, inline_rows[row["name"]])
    started = rec.of(ev.WorkerStarted)
    assert len(started) == 2 and started[-1].workers == 2
    assignments = {e.batch: e.worker for e in rec.of(ev.BatchAssigned)}
    assert set(assignments) == {("a", "c"), ("b",)}
    assert len(set(assignments.values())) == 2  # both workers ran a batch
    assert len(rec.of(ev.BackendReady)) == 1
    assert (tmp_path / "ray.log").is_file()


def test_a_killed_worker_reruns_its_batch_and_the_run_completes(cluster, tiny_backend, inline_rows, tmp_path):
    long = tuple(dataclasses.replace(e, steps=300, decode_every=300) for e in QUEUE)
    kill = KillOnFirstStep("a")
    rec = Recorder(kill)
    result = run_queue(spec_of(tiny_backend, long), rec, log_dir=tmp_path)
    assert kill.killed is not None
    assert result.status == "done"
    assert [r["status"] for r in result.experiments] == ["done"] * 3
    died = rec.of(ev.WorkerDied)
    assert [(d.worker, d.batch, d.retry, d.attempt) for d in died] == [(kill.killed, ("a", "c"), True, 1)]
    retried = [e for e in rec.of(ev.BatchAssigned) if e.attempt == 2]
    assert [e.batch for e in retried] == [("a", "c")] and retried[0].worker != kill.killed
    assert "ActorDiedError" in died[0].error
    # Run again from the start: the same numbers as a batch that was never interrupted.
    again = run_queue(
        spec_of(tiny_backend, long[:1] + long[2:], executor=Executor()),
        lambda e: None,
        models=load_models(tiny_backend),
    )
    for row, reference in zip([r for r in result.experiments if r["name"] != "b"], again.experiments):
        close(row, reference)


def test_max_attempts_1_fails_the_dead_workers_batch_and_the_rest_finish(cluster, tiny_backend, tmp_path):
    long = tuple(dataclasses.replace(e, steps=300, decode_every=300) for e in QUEUE)
    kill = KillOnFirstStep("a")
    rec = Recorder(kill)
    executor = dataclasses.replace(TWO_WORKERS, max_attempts=1)
    result = run_queue(spec_of(tiny_backend, long, executor), rec, log_dir=tmp_path)
    assert result.status == "failed"
    rows = {r["name"]: r for r in result.experiments}
    assert rows["b"]["status"] == "done"
    for name in ("a", "c"):
        assert rows[name]["status"] == "failed"
        assert rows[name]["error"].startswith(f"worker {kill.killed} died: ")
    died = rec.of(ev.WorkerDied)
    assert [(d.batch, d.retry, d.attempt, d.max_attempts) for d in died] == [(("a", "c"), False, 1, 1)]
    assert not [e for e in rec.of(ev.BatchAssigned) if e.attempt > 1]


def test_one_story_is_shared_out_among_idle_workers_with_the_inline_numbers(cluster, tiny_backend, tmp_path):
    queue = (
        QUEUE[0],
        QUEUE[2],
        dataclasses.replace(QUEUE[0], name="d", lr=0.03),
        dataclasses.replace(QUEUE[2], name="e"),
    )
    control = Steering()
    rec = Recorder(resume_when_both_are_up(control))
    result = run_queue(spec_of(tiny_backend, queue), rec, control, log_dir=tmp_path)
    assert sorted(e.batch for e in rec.of(ev.BatchAssigned)) == [("a", "c"), ("d", "e")]
    inline = run_queue(spec_of(tiny_backend, queue, Executor()), lambda e: None, models=load_models(tiny_backend))
    for row, reference in zip(result.experiments, inline.experiments):  # inline ran them as one batch of four
        close(row, reference)


def test_models_that_do_not_load_on_the_workers_fail_the_run_in_one_line(cluster, tiny_backend, tmp_path):
    """Nothing ran: the run fails in one line and every experiment stays pending for --resume."""
    broken = dataclasses.replace(tiny_backend, predictor=str(tmp_path / "no-such-predictor"))
    rec = Recorder()
    result = run_queue(spec_of(broken), rec, log_dir=tmp_path)
    assert result.status == "failed"
    (failed,) = rec.of(ev.BackendFailed)
    assert "no-such-predictor" in failed.error and "\n" not in failed.error
    assert {r["status"] for r in result.experiments} == {"pending"}
    assert not rec.of(ev.ExperimentFinished)


def config_text(backend, experiments: list[dict]) -> str:
    lines = [
        "[backend]",
        *(f"{key} = {json.dumps(getattr(backend, key))}" for key in ("encoder", "decoder", "tokenizer", "predictor")),
        'device = "cpu"',
        '[executor]\nkind = "ray"\nworkers = 2',
        "[defaults]\nsteps = 6\ndecode_every = 3",
        *(
            f"[stories.{n}]\nsentences = {json.dumps(list(s.sentences))}\noptimize = {s.optimize}\n"
            f"targets = {list(s.targets)}"
            for n, s in STORIES.items()
        ),
    ]
    for experiment in experiments:
        lines.append("[[experiments]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in experiment.items()))
    return "\n".join(lines) + "\n"


async def test_the_dashboard_shows_the_two_workers_and_what_they_run(cluster, tiny_backend, tmp_path):
    from embopt_tui.dashboard.app import make_app

    config = tmp_path / "experiments.toml"
    config.write_text(
        config_text(
            tiny_backend,
            [
                # long enough that the two batches overlap on a loaded machine (150 steps did not, once)
                {"name": "a", "init": "I like cheese.", "story": "lily", "steps": 600},
                {"name": "b", "init": "There was a boy named Tom.", "story": "later", "steps": 600},
            ],
        )
    )
    app = make_app(config, runs_dir=tmp_path / "runs", stable=True)
    seen: list[str] = []

    def both_running() -> bool:
        line = str(app.workers_line.content) if app.workers_line.display else ""
        header = str(app._status_text())
        if "2 workers" in header and line.count(" cpu: ") == 2 and "idle" not in line:
            seen.append(line)
        return app.engine_code is not None

    async with app.run_test(size=(120, 30)) as pilot:
        for _ in range(2400):  # a bound for a hung run, not a speed check
            if both_running():
                break
            await pilot.pause(0.05)
        assert app.engine_code == 0
        assert seen, "never saw two workers, each running its batch"
        assert "w1 cpu: " in seen[0] and "w2 cpu: " in seen[0]
        assert {"a", "b"} <= set(seen[0].replace(",", " ").replace(":", " ").split())
        assert app.state.workers.size == 2
