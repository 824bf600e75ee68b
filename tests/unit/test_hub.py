"""`backend.predictor` as a Hugging Face hub id, resolved offline from a hub cache the test lays out.

The cache holds the tiny predictor's real files (``hf_home`` in tests/conftest.py); loading goes
through huggingface_hub's ``snapshot_download`` and the engine's own loader, nothing stubbed.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from engine import events as ev
from engine.events import BackendReady, event_from_json
from engine.models.predictor_dir import PredictorError, parse_hub_id
from engine.run.backend import load_models
from engine.run.runner import run_queue
from engine.spec import Experiment, Spec, SpecError, Story, parse_spec

MAIN = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
STORY = Story("s", ("Once upon a time, there was a little girl named Lily.", "She loved to play outside."))
CONFIG = '[backend]\npredictor = "{}"\n[stories.s]\nsentences = ["a", "b"]\n[[experiments]]\nname = "e"\ninit = "a"\n'


def hub_backend(tiny_backend, predictor: str):
    return dataclasses.replace(tiny_backend, predictor=predictor)


@pytest.mark.parametrize(
    "value, parsed",
    [
        ("raxtemur/sonar-llm-900m", ("raxtemur/sonar-llm-900m", None)),
        ("raxtemur/sonar-llm-1.3b@main", ("raxtemur/sonar-llm-1.3b", "main")),
        (f"owner/name@{MAIN}", ("owner/name", MAIN)),
        ("owner/name@refs/pr/1", ("owner/name", "refs/pr/1")),
        ("/abs/dir", None),
        ("./rel", None),
        ("a/b/c", None),
        ("name-only", None),
        ("owner/name@", None),
        ("owner/na me", None),
        ("owner--x/name", None),
        ("owner/name.", None),
    ],
)
def test_parse_hub_id(value: str, parsed) -> None:
    assert parse_hub_id(value) == parsed


def test_spec_keeps_a_hub_id_and_rejects_a_malformed_one(tmp_path: Path) -> None:
    config = tmp_path / "q.toml"
    hub_id = "raxtemur/sonar-llm-900m@main"
    assert parse_spec(CONFIG.format(hub_id), config).backend.predictor == hub_id
    with pytest.raises(SpecError) as info:
        parse_spec(CONFIG.format("raxtemur/sonar-llm-900m@"), config)
    assert str(info.value) == (
        f'{config}:2: backend.predictor: "raxtemur/sonar-llm-900m@" ({tmp_path}/raxtemur/sonar-llm-900m@): '
        "predictor directory does not exist, nor is it a Hugging Face hub id (owner/name or owner/name@revision)"
    )


def test_an_existing_directory_of_that_form_wins_over_the_hub(tmp_path: Path, tiny_dir: Path) -> None:
    local = tmp_path / "owner" / "name"
    local.parent.mkdir()
    local.symlink_to(tiny_dir / "predictor")
    assert parse_spec(CONFIG.format("owner/name"), tmp_path / "q.toml").backend.predictor == str(local)


def test_a_cached_hub_id_loads_offline_and_names_its_snapshot(hf_home, tiny_dir, tiny_backend) -> None:
    snapshot = hf_home("owner/tiny-llm", tiny_dir / "predictor", MAIN)
    stages: list[tuple[str, float]] = []
    models = load_models(hub_backend(tiny_backend, "owner/tiny-llm"), progress=lambda s, f: stages.append((s, f)))
    assert models.predictor_dir == str(snapshot)
    assert models.predictor_revision == MAIN
    assert models.predictor.config.embed_dim == models.space.dim
    assert stages[0] == ("resolving owner/tiny-llm", 0.0)
    fractions = [f for _, f in stages]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0


def test_a_hub_id_is_not_taken_for_a_folder_of_the_working_directory(
    hf_home, tiny_dir: Path, tiny_backend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # engine.spec resolved the config's folder already; where the engine happens to run must not matter.
    (tmp_path / "owner" / "cwd-twin").mkdir(parents=True)
    monkeypatch.chdir(tmp_path)
    snapshot = hf_home("owner/cwd-twin", tiny_dir / "predictor", MAIN)
    assert load_models(hub_backend(tiny_backend, "owner/cwd-twin")).predictor_dir == str(snapshot)


def test_at_revision_picks_that_snapshot(hf_home, tiny_dir: Path, tiny_backend, tmp_path: Path) -> None:
    from engine.mini.tiny import write_tiny_predictor

    hf_home("owner/two-revs", tiny_dir / "predictor", MAIN)
    other = hf_home("owner/two-revs", write_tiny_predictor(tmp_path / "other", seed=1), OTHER, refs=("v2",))
    main = load_models(hub_backend(tiny_backend, "owner/two-revs"))
    by_hash = load_models(hub_backend(tiny_backend, f"owner/two-revs@{OTHER}"))
    by_tag = load_models(hub_backend(tiny_backend, "owner/two-revs@v2"))
    assert (main.predictor_revision, by_hash.predictor_revision, by_tag.predictor_revision) == (MAIN, OTHER, OTHER)
    assert by_tag.predictor_dir == str(other)
    weight = "forward_proj.linear.weight"
    assert not main.predictor.state_dict()[weight].equal(by_hash.predictor.state_dict()[weight])
    assert by_tag.predictor.state_dict()[weight].equal(by_hash.predictor.state_dict()[weight])


def test_an_id_absent_from_the_cache_offline_is_one_line(hf_home, tiny_backend) -> None:
    with pytest.raises(PredictorError) as info:
        load_models(hub_backend(tiny_backend, "owner/not-cached"))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("owner/not-cached: not in the Hugging Face cache (")
    assert "HF_HUB_OFFLINE is set" in message


def test_a_cached_snapshot_without_weights_names_what_is_missing(hf_home, tiny_backend, tmp_path: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text(json.dumps({"llama_config": {}, "embed_dim": 32}))
    snapshot = hf_home("owner/partial", partial, MAIN)
    with pytest.raises(PredictorError, match=f"owner/partial: snapshot {snapshot}: not a SONAR-LLM directory"):
        load_models(hub_backend(tiny_backend, "owner/partial"))


def test_the_run_fails_its_backend_once_and_records_the_hub_snapshot(hf_home, tiny_dir: Path, tiny_backend) -> None:
    failed: list[ev.Event] = []
    experiments = (Experiment("e", "I like cheese.", story="s", steps=1),)
    spec = Spec(Path("q.toml"), hub_backend(tiny_backend, "owner/absent"), {"s": STORY}, experiments)
    result = run_queue(spec, failed.append)
    assert result.status == ev.FAILED
    errors = [e.error for e in failed if isinstance(e, ev.BackendFailed)]
    assert len(errors) == 1 and errors[0].startswith("PredictorError: owner/absent: not in the Hugging Face cache")

    snapshot = hf_home("owner/recorded", tiny_dir / "predictor", MAIN)
    seen: list[ev.Event] = []
    spec = dataclasses.replace(spec, backend=hub_backend(tiny_backend, "owner/recorded"))
    assert run_queue(spec, seen.append).status == ev.DONE
    ready = next(e for e in seen if isinstance(e, BackendReady))
    assert (ready.predictor, ready.predictor_revision) == (str(snapshot), MAIN)
    assert event_from_json(json.loads(json.dumps(ready.to_json()))) == ready
    assert (
        event_from_json(
            {
                "type": "backend_ready",
                "backend": "mini",
                "device": "cpu",
                "dim": 8,
                "reference_norm": 1.0,
                "seconds": 0.1,
            }
        ).predictor
        is None
    )
