"""The run directory and the result formats, fed with real engine events."""

from __future__ import annotations

import csv
import io
import json
import math
import re
from pathlib import Path

import pytest

from engine import events as ev
from engine.rundir import columns, report
from engine.rundir.store import EVENTS_FILE, RunStore, StoreError, read_events

CONFIG = '# the exact text, comments included\n[backend]\nkind = "mini"\n'


def result(name: str, status: str = "done", final: float = 0.3, **extra: object) -> dict:
    row = {
        "name": name,
        "init_text": "I like cheese.",
        "story": "lily",
        "lr": 0.02,
        "steps": 10,
        "steps_done": 10,
        "optimizer": "adam",
        "objective": "cosine",
        "norm": "reference",
        "status": status,
        "init_sim": 0.171,
        "final_sim": final,
        "best_sim": final,
        "best_step": 10,
        "improvement": final - 0.171,
        "oracle_sim": 0.9,
        "roundtrip_sim": 0.2,
        "text_sim": final - 0.1,
        "text": "Lia was happy.",
        "decoded_z": "Lia wasn't | interested",
        "decoded_predictions": ["She loved."],
        "targets": ["She loved to play outside."],
        "exact_match": [False],
        "seconds": 1.5,
        "error": None,
        "trajectory": [0.171, 0.25, final],
        "z": [0.1, -0.2, 0.3],
    }
    row.update(extra)
    return row


def start(tmp_path: Path, names=("a", "b", "c")) -> RunStore:
    config = tmp_path / "my queue.toml"
    config.write_text(CONFIG, encoding="utf-8")
    store = RunStore.create(config, tmp_path / "runs")
    store.record(ev.RunStarted(run_dir=str(store.run_dir), config_path=str(config), experiments=tuple(names)))
    return store


def results(store: RunStore) -> dict:
    return results_of(store.run_dir)


def results_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "results.json").read_text())


def test_create_names_the_directory_and_keeps_the_exact_config(tmp_path: Path) -> None:
    store = start(tmp_path)
    assert re.fullmatch(r"\d{8}T\d{6}Z-my queue", store.run_dir.name)
    assert (store.run_dir / "config.toml").read_text() == CONFIG
    data = results(store)
    assert data["status"] == "running" and data["finished"] is None and data["best"] == {}
    assert [r["name"] for r in data["experiments"]] == ["a", "b", "c"]
    assert {r["status"] for r in data["experiments"]} == {"pending"}
    second = RunStore.create(tmp_path / "my queue.toml", tmp_path / "runs")  # same second: a distinct directory
    assert second.run_dir != store.run_dir


def test_a_run_writes_every_file_as_experiments_finish(tmp_path: Path) -> None:
    store = start(tmp_path)
    store.record(
        ev.ExperimentStarted(name="a", steps=10, batch=("a", "b"), init_sim=0.171, oracle_sim=0.9, targets=("t",))
    )
    store.record(ev.Step(name="a", step=1, total=10, sim=0.2, sims=(0.2,), loss=-0.2, norm=0.21, steps_per_s=5.0))
    assert results(store)["experiments"][1]["status"] == "pending"
    store.record(ev.ExperimentFinished(name="a", status="done", result=result("a", final=0.299)))
    # Finished work is on disk before the run ends.
    data = results(store)
    assert data["experiments"][0]["final_sim"] == 0.299 and data["best"] == {"lily": "a"}
    assert "z" not in data["experiments"][0]
    store.record(ev.ExperimentFinished(name="b", status="done", result=result("b", final=0.305)))
    store.record(
        ev.ExperimentFinished(name="c", status="failed", result=result("c", "failed", final=math.nan, error="NaN loss"))
    )
    store.record(ev.RunFinished(status="failed", run_dir=str(store.run_dir), best={"lily": "b"}))
    store.close()

    data = results(store)
    assert set(data) >= {"status", "config", "started", "finished", "best", "experiments"}
    assert data["status"] == "failed" and data["best"] == {"lily": "b"} and data["finished"]
    for row in data["experiments"]:
        assert set(report.FIELDS) <= set(row)
    assert data["experiments"][2]["final_sim"] is None  # NaN -> null: standard JSON
    lines = (store.run_dir / EVENTS_FILE).read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == [
        "run_started",
        "experiment_started",
        "step",
        "experiment_finished",
        "experiment_finished",
        "experiment_finished",
        "run_finished",
    ]

    from safetensors.numpy import load_file

    z = load_file(str(store.run_dir / "embeddings.safetensors"))
    assert sorted(z) == ["a", "b", "c"] and z["a"].tolist() == pytest.approx([0.1, -0.2, 0.3])

    md = (store.run_dir / "results.md").read_text()
    header = md.splitlines()[0]
    for col in (
        "Experiment",
        "Init Text",
        "LR",
        "Steps",
        "Init Sim",
        "Final Sim",
        "Improvement",
        "Oracle",
        "Round-trip",
        "Text Sim",
        "Text",
        "Decoded z",
    ):
        assert f"| {col} |" in header
    assert "| **b** |" in md and "**0.305**" in md and "**+0.134**" in md
    assert (
        '**Best**: `b` (lr=0.02, steps=10), ranked by Text Sim: its best sentence scores 0.205 in z\'s place: "Lia was happy."'
        in md
    )
    assert "Lia wasn't \\| interested" in md  # a pipe in text does not split the row
    rows = list(csv.DictReader(io.StringIO((store.run_dir / "results.csv").read_text())))
    assert [r["name"] for r in rows] == ["a", "b", "c"] and [r["best"] for r in rows] == ["0", "1", "0"]
    assert rows[2]["status"] == "failed" and rows[2]["error"] == "NaN loss"


def test_open_keeps_finished_and_reruns_the_rest_after_a_torn_write(tmp_path: Path) -> None:
    store = start(tmp_path)
    store.record(ev.ExperimentFinished(name="a", status="done", result=result("a")))
    store.record(ev.ExperimentFinished(name="b", status="interrupted", result=result("b", "interrupted", steps_done=4)))
    store.record(ev.ExperimentStarted(name="c", steps=10, batch=("c",), init_sim=0.1, oracle_sim=0.9, targets=("t",)))
    store.close()
    events_path = store.run_dir / EVENTS_FILE
    whole = events_path.read_bytes()
    with open(events_path, "ab") as f:  # kill -9 in the middle of a line
        f.write(b'{"type":"step","name":"c","st')
    (store.run_dir / "results.json").unlink()  # killed before the first summary, even

    again = RunStore.open(store.run_dir)
    assert events_path.read_bytes() == whole  # the torn line is gone, appends start clean
    assert sorted(again.completed) == ["a"]
    assert again.completed["a"]["z"] == pytest.approx([0.1, -0.2, 0.3])
    assert again.config_text == CONFIG
    again.record(ev.RunStarted(run_dir=str(again.run_dir), config_path="x", experiments=("a", "b", "c"), resumed=True))
    again.record(ev.ExperimentFinished(name="b", status="done", result=result("b", final=0.31)))
    again.record(ev.ExperimentFinished(name="c", status="done", result=result("c", final=0.2)))
    again.record(ev.RunFinished(status="done", run_dir=str(again.run_dir), best={"lily": "b"}))
    again.close()
    data = results(again)
    assert [r["status"] for r in data["experiments"]] == ["done"] * 3
    assert data["best"] == {"lily": "b"} and data["status"] == "done" and len(data["resumed"]) == 1
    history, _ = read_events(events_path)
    assert sum(isinstance(e, ev.RunStarted) for e in history) == 2


def test_open_says_what_is_wrong_in_one_line(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="no such run directory"):
        RunStore.open(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(StoreError, match=r"not a run directory \(no config.toml\)"):
        RunStore.open(tmp_path / "empty")


def test_report_formats_side_by_side(tmp_path: Path) -> None:
    runs = []
    for final in (0.3, 0.4):
        store = start(tmp_path, names=("a", "b"))
        store.record(ev.ExperimentFinished(name="a", status="done", result=result("a", final=final)))
        store.record(ev.ExperimentFinished(name="b", status="done", result=result("b", final=final - 0.1)))
        store.record(ev.RunFinished(status="done", run_dir=str(store.run_dir), best={"lily": "a"}))
        store.close()
        runs.append(report.load_run(store.run_dir))

    one = report.format_table(runs[:1])
    assert "Run" not in one.splitlines()[0] and "Status" not in one.splitlines()[0]
    assert one.splitlines()[2].startswith("* a")  # the best row is marked
    two = report.format_table(runs)
    assert two.splitlines()[0].split()[0] == "Run" and two.count("Best:") == 2
    md = report.format_markdown(runs)
    assert md.startswith("| Run | Experiment |") and md.count("**Best** (") == 2
    rows = list(csv.DictReader(io.StringIO(report.format_csv(runs))))
    assert len(rows) == 4 and rows[0]["run"] == runs[0].label
    assert [r["run_dir"] for r in json.loads(report.format_json(runs))] == [r.path for r in runs]
    assert json.loads(report.format_json(runs[:1]))["best"] == {"lily": "a"}
    with pytest.raises(report.ReportError, match="no such run directory"):
        report.load_run(tmp_path / "nope")


def headers(rows: list[dict], several_runs: bool = False) -> list[str]:
    return [c.header for c in columns.choose(rows, several_runs=several_runs)]


REFERENCE = ["Experiment", "Init Text", "LR", "Steps", "Init Sim", "Final Sim", "Improvement"]
METRICS = ["Oracle", "Round-trip", "Text Sim"]
LOSSES = ["Init Loss", "Final Loss", "Best Loss"]


def test_report_columns_are_the_references_then_what_tells_rows_apart() -> None:
    """mse, sgd and none rows must not look alike; settings every row shares stay out of the way."""
    same = [result("a"), result("b", lr=0.05)]
    assert headers(same) == [*REFERENCE, *METRICS, "Text", "Decoded z"]  # the reference report's table, unchanged
    mixed = same + [result("c", objective="mse", optimizer="sgd", norm="none", seed=3)]
    expected = [*REFERENCE, *LOSSES, *METRICS, "Objective", "Optimizer", "Norm", "Seed", "Text", "Decoded z"]
    assert headers(mixed) == expected  # mse is not cosine: each row's own objective, at start, end and best
    skipped = same + [result("d", status="skipped", story="tom", beam_size=4, decode_every=5)]
    assert headers(skipped) == [
        *REFERENCE,
        *METRICS,
        "Story",
        "Beam Size",
        "Decode Every",
        "Status",
        "Text",
        "Decoded z",
    ]
    assert headers(same, several_runs=True)[:2] == ["Run", "Experiment"]

    run = report.Run("r", {"experiments": mixed, "best": {"lily": "a"}})
    table = report.format_table([run]).splitlines()
    assert table[0].split()[-7:] == ["Objective", "Optimizer", "Norm", "Seed", "Text", "Decoded", "z"]
    c = next(line for line in table if line.lstrip(" *").startswith("c "))
    assert "mse" in c and "sgd" in c and "none" in c
    assert report.format_markdown([run]).startswith("| Experiment | Init Text | LR | Steps |")
    assert (
        "objective" in report.format_csv([report.Run("r", {"experiments": same})]).splitlines()[0]
    )  # csv: every field


def test_side_by_side_runs_show_the_settings_that_differ_between_them(tmp_path: Path) -> None:
    one = [result("a"), result("b", final=0.2)]
    two = [result("a", objective="mse"), result("b", objective="mse", final=0.2)]
    assert "Objective" not in headers(one) and "Objective" not in headers(two)
    assert headers(one + two, several_runs=True) == [
        "Run",
        *REFERENCE,
        *LOSSES,
        *METRICS,
        "Objective",
        "Text",
        "Decoded z",
    ]


def test_a_table_at_80_columns_keeps_the_honest_score() -> None:
    """Free text goes first (Decoded z, then Init Text), then the lesser numbers; Text Sim and Text stay on screen."""
    rows = [result("story_init_lower_lr", init_text="There was a boy named Tom.", decoded_z="Once upon a time " * 3)]
    run = report.Run("r", {"experiments": rows + [result("baseline", final=0.2)]})
    wide = report.format_table([run]).splitlines()
    assert "Decoded z" in wide[0] and max(map(len, wide[:4])) > 80
    narrow = report.format_table([run], width=80).splitlines()
    assert max(map(len, narrow[:4])) <= 80
    for column in ("Experiment", "Text Sim", "Text", "Final Sim"):
        assert column in narrow[0]
    assert "Decoded z" not in narrow[0] and "Init Text" not in narrow[0]
    assert "Lia was happy." in narrow[2]  # the found sentence, whole at this width
    middle = report.format_table([run], width=160).splitlines()  # Decoded z narrowed, not dropped
    assert "Init Text" in middle[0] and "Decoded z" in middle[0] and max(map(len, middle[:4])) <= 160
    tight = report.format_table([run], width=40).splitlines()  # past every step: the honest score is what is left
    assert tight[0].split() == ["Experiment", "Text", "Sim", "Text"]


def tiny_config(tiny_dir: Path, experiments: str) -> str:
    """A config on the tiny test cards: stories ``s`` and ``t``, then ``experiments``."""
    return f"""[backend]
encoder = "tiny_encoder"
decoder = "tiny_decoder"
tokenizer = "tiny_encoder"
predictor = "{tiny_dir / "predictor"}"
device = "cpu"

[stories.s]
sentences = ["There was a boy named Tom.", "I like cheese.", "Begin of text."]

[stories.t]
sentences = ["Begin of text.", "There was a boy named Tom.", "I like cheese."]

{experiments}"""


def test_session_saves_everything_even_when_a_face_breaks(tiny_dir: Path, tmp_path: Path) -> None:
    """A face whose output died (SSH dropped) is dropped; the engine and the run directory carry on."""
    from engine.run.session import Session

    config = tmp_path / "q.toml"
    only = '[[experiments]]\nname = "only"\nstory = "s"\ninit = "I like cheese."\nsteps = 3\n'
    config.write_text(tiny_config(tiny_dir, only), encoding="utf-8")
    seen: list[str] = []

    def dead_terminal(event: ev.Event) -> None:
        seen.append(event.kind)
        if isinstance(event, ev.Step):
            raise OSError(5, "Input/output error")

    session = Session.start(config, tmp_path / "runs", on_event=dead_terminal)
    result = session.run()
    assert result.status == "done"
    assert seen[-1] == "step" and session.consumer_errors == ["OSError: [Errno 5] Input/output error"]
    data = results_of(session.run_dir)
    assert data["status"] == "done" and data["experiments"][0]["status"] == "done"
    kinds = [json.loads(line)["type"] for line in (session.run_dir / EVENTS_FILE).read_text().splitlines()]
    assert kinds.count("step") == 3 and kinds[-1] == "run_finished" and kinds.count("run_finished") == 1
    assert json.loads((session.run_dir / EVENTS_FILE).read_text().splitlines()[-1])["run_dir"] == str(session.run_dir)


LIVE_QUEUE = """[defaults]
steps = 3

[[experiments]]
name = "a"
story = "s"
init = "I like cheese."
steps = 40

[[experiments]]
name = "b"
story = "t"
init = "I like cheese."
lr = 0.02
"""
LIVE_EDIT = (
    LIVE_QUEUE.replace("lr = 0.02", "lr = 0.3") + '\n[[experiments]]\nname = "added"\nstory = "t"\ninit = "Hi."\n'
)


def test_live_edits_survive_a_resume(tiny_dir: Path, tmp_path: Path) -> None:
    """An experiment added and an lr changed mid-run are what --resume continues, not the config as started."""
    from engine.run.session import Session
    from engine.spec import parse_spec

    config = tmp_path / "q.toml"
    config.write_text(tiny_config(tiny_dir, LIVE_QUEUE), encoding="utf-8")
    session = Session.start(config, tmp_path / "runs")
    started_text = config.read_text(encoding="utf-8")
    config.write_text(tiny_config(tiny_dir, LIVE_EDIT), encoding="utf-8")  # the user saves the edit
    edited = parse_spec(config.read_text(encoding="utf-8"), config)

    def live(event: ev.Event) -> None:  # what the dashboard does on save, then Ctrl+C once the engine took it
        if isinstance(event, ev.Step) and event.name == "a" and event.step == 1:
            session.steering.replace_spec(edited)
        elif isinstance(event, ev.ConfigApplied):
            session.steering.request_stop()

    session.subscribe(live)
    assert session.run().status == "interrupted"
    run_dir = session.run_dir
    assert (run_dir / "config.toml").read_text(encoding="utf-8") == edited.text
    assert (run_dir / "config.started.toml").read_text(encoding="utf-8") == started_text
    stopped = {r["name"]: r for r in results_of(run_dir)["experiments"]}
    assert [stopped[n]["status"] for n in ("a", "b", "added")] == ["interrupted", "pending", "pending"]
    assert stopped["b"]["lr"] == 0.3 and stopped["added"]["init_text"] == "Hi."  # placeholders follow the edit

    resumed = Session.resume(run_dir)
    assert resumed.run().status == "done"
    rows = {r["name"]: r for r in results_of(run_dir)["experiments"]}
    assert list(rows) == ["a", "b", "added"] and {r["status"] for r in rows.values()} == {"done"}
    assert rows["b"]["lr"] == 0.3 and rows["added"]["steps_done"] == 3


def test_open_takes_the_last_applied_config_from_the_events(tmp_path: Path) -> None:
    """Killed between the event and the rewrite of config.toml: events.jsonl still says which queue was running."""
    store = start(tmp_path)
    store.record(ev.ConfigApplied(CONFIG + "# edited\n"))
    store.close()
    (store.run_dir / "config.toml").write_text(CONFIG, encoding="utf-8")  # as if the rewrite never happened
    again = RunStore.open(store.run_dir)
    assert again.config_text == CONFIG + "# edited\n"
    assert (store.run_dir / "config.toml").read_text(encoding="utf-8") == CONFIG + "# edited\n"
    again.close()
