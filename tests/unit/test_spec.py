"""experiments.toml parsing and validation (engine/spec/): pure Python, no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.spec import (
    Backend,
    Experiment,
    Objective,
    SpecError,
    Story,
    load_spec,
    parse_spec,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "experiments.toml"
LILY = (
    "Once upon a time, there was a little girl named Lily.",
    "She loved to play outside with her toys.",
    "One day, she saw a big tree in the sky.",
    "She wanted to climb it, but it was too high.",
    "Lily asked her mom to help her climb the tree.",
    "Her mom said, \"No, you can't climb the tree. It's too high.\"",
    "Lily was sad because she wanted to climb the tree.",
    "Later that day, Lily's mom told her that she could climb the tree.",
)

# Line numbers in the expected messages below refer to this text.
BASE = """\
[backend]
kind = "mini"

[defaults]
lr = 0.02

[stories.lily]
sentences = ["A.", "B.", "C."]

[[experiments]]
name = "a"
init = "x"
"""


def _sub(old: str, new: str) -> str:
    assert old in BASE, old
    return BASE.replace(old, new, 1)


def _add(extra: str) -> str:
    return BASE + extra


def _story(extra: str) -> str:
    return _sub('"C."]', '"C."]\n' + extra)


EXP = "q.toml:13: experiments[0] (a)"  # where a line added by _add lands

MALFORMED = [
    # TOML syntax: the line from tomllib's message
    (
        "syntax",
        _sub("lr = 0.02", "lr = 0.02 0.03"),
        "q.toml:5: invalid TOML: Expected newline or end of document after a statement (column 11)",
    ),
    ("syntax_unterminated", _add('name = "open\n'), "q.toml:13: invalid TOML: Illegal character '\\n' (column 13)"),
    ("table_twice", _add("[backend]\n"), "q.toml:13: invalid TOML: Cannot declare ('backend',) twice (column 9)"),
    ("key_twice", _add('init = "y"\n'), "q.toml:13: invalid TOML: Cannot overwrite a value (column 11)"),
    # unknown keys, at every level, with the closest suggestion
    (
        "unknown_top",
        "verbose = true\n" + BASE,
        "q.toml:1: unknown key 'verbose' (allowed: rank_by, backend, defaults, stories, experiments, executor)",
    ),
    ("unknown_exp_key", _add("lerning_rate = 0.1\n"), f"{EXP}: unknown key 'lerning_rate' (did you mean 'lr'?)"),
    (
        "unknown_second_exp_key",
        _add('\n[[experiments]]\nname = "b"\ninit = "y"\nstep = 10\n'),
        "q.toml:17: experiments[1] (b): unknown key 'step' (did you mean 'steps'?)",
    ),
    (
        "unknown_backend_key",
        _sub('kind = "mini"', 'kind = "mini"\ndevise = "cpu"'),
        "q.toml:3: backend: unknown key 'devise' (did you mean 'device'?)",
    ),
    (
        "unknown_story_key",
        _story("target = [1]"),
        "q.toml:9: stories.lily: unknown key 'target' (did you mean 'targets'?)",
    ),
    (
        "unknown_defaults_key",
        _sub("lr = 0.02", 'lr = 0.02\nname = "x"'),
        "q.toml:6: defaults: unknown key 'name' (allowed: story, init, lr, steps, optimizer, objective, norm, "
        "decode_every, beam_size, seed, method, bank, repeat, seeds, stop_at, stop_on_exact, snap_every, nearest, "
        "init_noise, top_k, search_width, buffer_size, n_replace, topk, population, weight_min, weight_max, insert, delete, resample, restart_every)",
    ),
    (
        "unknown_objective_term",
        _add("objective = {cosine = 1.0, ce = 0.1}\n"),
        f"{EXP}.objective: unknown key 'ce' (allowed: cosine, mse, decoder_ce, cycle, fluency, repetition)",
    ),
    # enums list what is allowed
    (
        "bad_kind",
        _sub('kind = "mini"', 'kind = "llama"'),
        'q.toml:2: backend.kind: must be one of "mini", "sonar"; got string "llama"',
    ),
    (
        "bad_device",
        _sub('kind = "mini"', 'kind = "mini"\ndevice = "gpu"'),
        'q.toml:3: backend.device: must be one of "auto", "cpu", "cuda"; got string "gpu"',
    ),
    (
        "bad_dtype",
        _sub('kind = "mini"', 'kind = "mini"\ndtype = "fp16"'),
        'q.toml:3: backend.dtype: must be one of "float32", "bfloat16", "float16"; got string "fp16"',
    ),
    (
        "bad_optimizer",
        _add('optimizer = "adamw"\n'),
        f'{EXP}.optimizer: must be one of "adam", "sgd"; got string "adamw"',
    ),
    (
        "bad_objective",
        _add('objective = "cos"\n'),
        f'{EXP}.objective: must be one of "cosine", "mse", "decoder_ce"; got string "cos"',
    ),
    (
        "objective_number",
        _add("objective = 1\n"),
        f'{EXP}.objective: must be one of "cosine", "mse", "decoder_ce" or a table of weights such as '
        "{cosine = 1.0, decoder_ce = 0.1}; got integer 1",
    ),
    ("bad_norm", _add('norm = "ref"\n'), f'{EXP}.norm: must be "reference", "none" or a number > 0; got string "ref"'),
    # backend
    (
        "sonar_needs_predictor",
        _sub('kind = "mini"', 'kind = "sonar"'),
        'q.toml:1: backend.predictor: required when kind = "sonar": a SONAR-LLM checkpoint directory or hub id'
        ' (e.g. "raxtemur/sonar-llm-900m")',
    ),
    (
        "empty_card",
        _sub('kind = "mini"', 'kind = "mini"\nencoder = ""'),
        "q.toml:3: backend.encoder: must be non-empty text",
    ),
    (
        "backend_not_table",
        _sub('[backend]\nkind = "mini"\n', 'backend = "mini"\n'),
        'q.toml:1: backend: must be a table, written [backend]; got string "mini"',
    ),
    # wrong types: bool is not a number
    ("lr_bool", _add("lr = true\n"), f"{EXP}.lr: must be a number, got boolean true"),
    ("lr_string", _sub("lr = 0.02", 'lr = "0.02"'), 'q.toml:5: defaults.lr: must be a number, got string "0.02"'),
    ("steps_float", _add("steps = 100.0\n"), f"{EXP}.steps: must be an integer, got float 100.0"),
    ("seed_bool", _add("seed = false\n"), f"{EXP}.seed: must be an integer, got boolean false"),
    (
        "norm_bool",
        _add("norm = false\n"),
        f'{EXP}.norm: must be "reference", "none" or a number > 0; got boolean false',
    ),
    (
        "init_number",
        _sub('init = "x"', "init = 3"),
        "q.toml:12: experiments[0] (a).init: must be a string, got integer 3",
    ),
    # out of range
    ("lr_zero", _add("lr = 0\n"), f"{EXP}.lr: must be > 0, got 0"),
    ("lr_negative_in_defaults", _sub("lr = 0.02", "lr = -0.1"), "q.toml:5: defaults.lr: must be > 0, got -0.1"),
    ("lr_nan", _add("lr = nan\n"), f"{EXP}.lr: must be a finite number, got float nan"),
    ("lr_inf", _add("lr = inf\n"), f"{EXP}.lr: must be a finite number, got float inf"),
    ("steps_zero", _add("steps = 0\n"), f"{EXP}.steps: must be >= 1, got 0"),
    ("beam_size_zero", _add("beam_size = 0\n"), f"{EXP}.beam_size: must be >= 1, got 0"),
    ("decode_every_zero", _add("decode_every = 0\n"), f"{EXP}.decode_every: must be >= 1, got 0"),
    ("seed_negative", _add("seed = -1\n"), f"{EXP}.seed: must be >= 0, got -1"),
    (
        "steps_huge",
        _add("steps = 99999999999999999999\n"),
        f"{EXP}.steps: must be <= 1_000_000, got 99999999999999999999",
    ),
    (
        "steps_over_max",
        _sub("lr = 0.02", "lr = 0.02\nsteps = 1_000_001"),
        "q.toml:6: defaults.steps: must be <= 1_000_000, got 1000001",
    ),
    (
        "decode_every_huge",
        _add("decode_every = 10_000_000\n"),
        f"{EXP}.decode_every: must be <= 1_000_000, got 10000000",
    ),
    ("beam_size_huge", _add("beam_size = 65\n"), f"{EXP}.beam_size: must be <= 64, got 65"),
    (
        "seed_huge",
        _add("seed = 99999999999999999999\n"),
        f"{EXP}.seed: must be <= 9_223_372_036_854_775_807, got 99999999999999999999",
    ),
    ("norm_zero", _add("norm = 0\n"), f"{EXP}.norm: must be > 0, got 0"),
    (
        "objective_negative_weight",
        _add("objective = {cosine = 1.0, mse = -0.5}\n"),
        f"{EXP}.objective.mse: must be >= 0, got -0.5",
    ),
    (
        "objective_all_zero",
        _add("objective = {cosine = 0}\n"),
        f"{EXP}.objective: needs at least one weight > 0 on a target term (cosine, mse, decoder_ce)",
    ),
    # names and init text
    (
        "duplicate_name",
        _add('\n[[experiments]]\nname = "a"\ninit = "y"\n'),
        "q.toml:15: experiments[1] (a).name: duplicate experiment name 'a' (also experiments[0])",
    ),
    ("missing_name", _add('\n[[experiments]]\ninit = "y"\n'), "q.toml:14: experiments[1]: missing required key 'name'"),
    ("empty_name", _sub('name = "a"', 'name = ""'), "q.toml:11: experiments[0].name: must be non-empty text"),
    (
        "slash_in_name",
        _sub('name = "a"', 'name = "a/b"'),
        "q.toml:11: experiments[0].name: must have no surrounding spaces, slashes or control characters; "
        'got string "a/b"',
    ),
    (
        "missing_init",
        _sub('init = "x"\n', ""),
        "q.toml:10: experiments[0] (a): missing required key 'init' (the text z starts from)",
    ),
    ("blank_init", _sub('init = "x"', 'init = "   "'), "q.toml:12: experiments[0] (a).init: must be non-empty text"),
    # stories
    ("unknown_story", _add('story = "lilly"\n'), f"{EXP}.story: unknown story 'lilly' (did you mean 'lily'?)"),
    (
        "unknown_story_in_defaults",
        _sub("lr = 0.02", 'lr = 0.02\nstory = "tom"'),
        "q.toml:6: defaults.story: unknown story 'tom' (stories: lily)",
    ),
    (
        "which_story",
        _sub("[[experiments]]", '[stories.tom]\nsentences = ["C.", "D."]\n\n[[experiments]]'),
        "q.toml:13: experiments[0] (a): which story? set 'story' here or in [defaults] (stories: lily, tom)",
    ),
    (
        "no_stories",
        _sub('[stories.lily]\nsentences = ["A.", "B.", "C."]\n', ""),
        "q.toml: no stories: add a [stories.NAME] table with its sentences",
    ),
    (
        "story_not_table",
        "stories = {lily = 3}\n" + _sub('[stories.lily]\nsentences = ["A.", "B.", "C."]\n', ""),
        "q.toml:1: stories.lily: must be a table, written [stories.lily]; got integer 3",
    ),
    (
        "one_sentence",
        _sub('["A.", "B.", "C."]', '["A."]'),
        "q.toml:8: stories.lily.sentences: needs at least 2 sentences, got 1",
    ),
    (
        "empty_sentence",
        _sub('["A.", "B.", "C."]', '["A.", "", "C."]'),
        "q.toml:8: stories.lily.sentences[1]: must be non-empty text",
    ),
    (
        "sentence_number",
        _sub('["A.", "B.", "C."]', '["A.", 2]'),
        "q.toml:8: stories.lily.sentences[1]: must be a string, got integer 2",
    ),
    (
        "sentences_string",
        _sub('["A.", "B.", "C."]', '"A. B."'),
        'q.toml:8: stories.lily.sentences: must be an array of strings, got string "A. B."',
    ),
    (
        "missing_sentences",
        _sub('sentences = ["A.", "B.", "C."]', "optimize = 0"),
        "q.toml:7: stories.lily: missing required key 'sentences'",
    ),
    (
        "optimize_outside",
        _story("optimize = 3"),
        "q.toml:9: stories.lily.optimize: index 3 is outside the story (sentences 0..2)",
    ),
    (
        "optimize_negative",
        _story("optimize = -1"),
        "q.toml:9: stories.lily.optimize: index -1 is outside the story (sentences 0..2)",
    ),
    (
        "optimize_last",
        _story("optimize = 2"),
        "q.toml:9: stories.lily.optimize: index 2 is the last sentence: no sentence after it is left to score",
    ),
    (
        "target_outside",
        _story("targets = [1, 5]"),
        "q.toml:9: stories.lily.targets[1]: index 5 is outside the story (sentences 0..2)",
    ),
    (
        "target_before_optimize",
        _story("optimize = 1\ntargets = [0]"),
        "q.toml:10: stories.lily.targets[0]: target 0 is not after optimize = 1: the predictor is causal, "
        "so only later sentences depend on z",
    ),
    (
        "target_is_optimize",
        _story("targets = [0]"),
        "q.toml:9: stories.lily.targets[0]: target 0 is not after optimize = 0: the predictor is causal, "
        "so only later sentences depend on z",
    ),
    ("target_twice", _story("targets = [1, 1]"), "q.toml:9: stories.lily.targets[1]: target 1 is listed twice"),
    ("targets_empty", _story("targets = []"), "q.toml:9: stories.lily.targets: must list at least one sentence index"),
    (
        "target_bool",
        _story("targets = [true]"),
        "q.toml:9: stories.lily.targets[0]: must be a sentence index (an integer), got boolean true",
    ),
    ("context_blank", _story('context = [""]'), "q.toml:9: stories.lily.context[0]: must be non-empty text"),
    # experiments table
    (
        "no_experiments",
        _sub('[[experiments]]\nname = "a"\ninit = "x"\n', ""),
        "q.toml: no experiments: add at least one [[experiments]] table",
    ),
    (
        "experiments_not_array",
        _sub("[[experiments]]", "[experiments]"),
        "q.toml:10: experiments: must be an array of tables, written [[experiments]]; got a table",
    ),
]


@pytest.mark.parametrize("text, expected", [c[1:] for c in MALFORMED], ids=[c[0] for c in MALFORMED])
def test_malformed_config_gives_one_exact_line(text: str, expected: str) -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(text, "q.toml", base_dir="/nonexistent")
    assert str(info.value) == expected
    assert "\n" not in str(info.value)


def test_there_are_at_least_25_distinct_malformed_configs() -> None:
    assert len({c[1] for c in MALFORMED}) >= 25
    assert len({c[2] for c in MALFORMED}) == len(MALFORMED)


def test_base_config_itself_is_valid() -> None:
    spec = parse_spec(BASE, "q.toml")
    assert spec.experiments == (Experiment(name="a", init="x", story="lily", lr=0.02),)


# --- the shipped queue -----------------------------------------------------------------------------------


REPORT = [  # name, init, lr, steps: the reference report's summary table
    ("baseline", "I like cheese.", 0.02, 100),
    ("lower_lr", "I like cheese.", 0.005, 100),
    ("higher_lr", "I like cheese.", 0.05, 100),
    ("longer", "I like cheese.", 0.02, 200),
    ("lower_lr_longer", "I like cheese.", 0.005, 200),
    ("story_init", "There was a boy named Tom.", 0.02, 100),
    ("story_init_lower_lr", "There was a boy named Tom.", 0.005, 100),
]


def test_shipped_queue_is_the_reference_reports_seven_experiments() -> None:
    spec = load_spec(SHIPPED)
    assert [(e.name, e.init, e.lr, e.steps) for e in spec.experiments] == REPORT
    assert spec.backend == Backend()  # kind "mini", mini cards, shipped predictor, device auto, float32
    assert spec.stories == {"lily": Story("lily", LILY, optimize=0, targets=(1,), context=())}
    for e in spec.experiments:
        assert (e.story, e.optimizer, e.objective, e.norm, e.decode_every, e.beam_size, e.seed) == (
            "lily",
            "adam",
            Objective((("cosine", 1.0),)),
            "reference",
            10,
            1,
            0,
        )
    assert spec.text == SHIPPED.read_text(encoding="utf-8")
    assert spec.story_of(spec.experiments[0]).sentences[1] == "She loved to play outside with her toys."


def test_lily_sentences_match_the_reference_story() -> None:
    reference = ROOT.parent / "shared" / "reference" / "lily-story.md"
    if not reference.is_file():
        pytest.skip("reference folder not next to the repository")
    for index, sentence in enumerate(LILY):
        assert f"{index}. {sentence}\n" in reference.read_text(encoding="utf-8")


# --- defaults, overrides, objectives, stories ---------------------------------------------------------------


def test_defaults_apply_and_experiments_override_them() -> None:
    spec = parse_spec(
        """
        [defaults]
        lr = 0.1
        steps = 7
        optimizer = "sgd"
        objective = "mse"
        norm = 0.207
        decode_every = 3
        beam_size = 4
        seed = 9
        init = "Hello."
        [stories.s]
        sentences = ["A.", "B."]
        [[experiments]]
        name = "plain"
        [[experiments]]
        name = "own"
        init = "Bye."
        lr = 1
        steps = 2
        optimizer = "adam"
        objective = "decoder_ce"
        norm = "none"
        decode_every = 1
        beam_size = 1
        seed = 0
        """,
        "x.toml",
    )
    plain, own = spec.experiments
    assert plain == Experiment("plain", "Hello.", "s", 0.1, 7, "sgd", Objective((("mse", 1.0),)), 0.207, 3, 4, 9)
    assert own == Experiment("own", "Bye.", "s", 1.0, 2, "adam", Objective((("decoder_ce", 1.0),)), "none", 1, 1, 0)
    assert isinstance(own.lr, float)


def test_objective_table_is_canonical_and_drops_zero_weights() -> None:
    text = BASE + "objective = {decoder_ce = 0.1, mse = 0, cosine = 1}\n"
    objective = parse_spec(text, "q.toml").experiments[0].objective
    assert objective == Objective(weights=(("cosine", 1.0), ("decoder_ce", 0.1)))
    assert objective.label == "1*cosine+0.1*decoder_ce"
    single = parse_spec(BASE + "objective = {cosine = 1.0}\n", "q.toml").experiments[0].objective
    assert single == Objective() and single.label == "cosine"


def test_story_targets_context_and_optimize() -> None:
    text = _story('optimize = 1\ntargets = [2]\ncontext = ["Begin of text."]')
    story = parse_spec(text, "q.toml").stories["lily"]
    assert story == Story("lily", ("A.", "B.", "C."), optimize=1, targets=(2,), context=("Begin of text.",))
    assert parse_spec(_story("optimize = 1"), "q.toml").stories["lily"].targets == (2,)


def test_story_named_in_defaults_or_experiment_when_several_exist() -> None:
    text = _sub("[[experiments]]", '[stories.tom]\nsentences = ["C.", "D."]\n\n[[experiments]]')
    assert parse_spec(text + 'story = "tom"\n', "q.toml").experiments[0].story == "tom"
    assert parse_spec(text.replace("lr = 0.02", 'lr = 0.02\nstory = "tom"'), "q.toml").experiments[0].story == "tom"


def test_sonar_backend_defaults_to_the_real_card_names(tmp_path: Path) -> None:
    _make_predictor(tmp_path / "ckpt")
    config = tmp_path / "q.toml"
    config.write_text(_sub('kind = "mini"', 'kind = "sonar"\npredictor = "ckpt"\ndevice = "cpu"\ndtype = "bfloat16"'))
    backend = load_spec(config).backend
    assert backend == Backend(
        "sonar",
        "text_sonar_basic_encoder",
        "text_sonar_basic_decoder",
        "text_sonar_basic_encoder",
        str(tmp_path / "ckpt"),
        "cpu",
        "bfloat16",
    )


def test_card_names_can_be_overridden() -> None:
    text = _sub('kind = "mini"', 'kind = "mini"\nencoder = "e"\ndecoder = "d"\ntokenizer = "t"')
    backend = parse_spec(text, "q.toml").backend
    assert (backend.encoder, backend.decoder, backend.tokenizer, backend.predictor) == ("e", "d", "t", None)


# --- predictor directories -----------------------------------------------------------------------------------


def _make_predictor(directory: Path, config: object = None, weights: str | None = "model.safetensors") -> Path:
    directory.mkdir(parents=True)
    if config is None:
        config = {"llama_config": {"hidden_size": 8}, "embed_dim": 16, "add_begin": True}
    (directory / "config.json").write_text(config if isinstance(config, str) else json.dumps(config))
    if weights:
        (directory / weights).write_bytes(b"")  # only presence is checked before the engine loads it
    return directory


def test_relative_predictor_path_resolves_against_the_config_folder(tmp_path: Path, monkeypatch) -> None:
    _make_predictor(tmp_path / "conf" / "models" / "p", weights="pytorch_model.bin")
    config = tmp_path / "conf" / "q.toml"
    config.write_text(_sub('kind = "mini"', 'kind = "mini"\npredictor = "models/p"'))
    monkeypatch.chdir(tmp_path)  # the working directory must not matter
    assert load_spec(Path("conf/q.toml")).backend.predictor == str(tmp_path / "conf" / "models" / "p")


def test_base_dir_overrides_the_config_folder(tmp_path: Path) -> None:
    # A resumed run reads RUN_DIR/config.toml but resolves paths where the original config lived.
    _make_predictor(tmp_path / "orig" / "p")
    copy = tmp_path / "run" / "config.toml"
    copy.parent.mkdir()
    copy.write_text(_sub('kind = "mini"', 'kind = "mini"\npredictor = "p"'))
    with pytest.raises(SpecError, match="predictor directory does not exist"):
        load_spec(copy)
    assert load_spec(copy, base_dir=tmp_path / "orig").backend.predictor == str(tmp_path / "orig" / "p")


def test_absolute_predictor_path_is_kept(tmp_path: Path) -> None:
    directory = _make_predictor(tmp_path / "p")
    text = _sub('kind = "mini"', f'kind = "mini"\npredictor = {json.dumps(str(directory))}')
    assert parse_spec(text, "q.toml", base_dir="/elsewhere").backend.predictor == str(directory)


BAD_PREDICTORS = [
    (
        "missing",
        None,
        "predictor directory does not exist, nor is it a Hugging Face hub id (owner/name or owner/name@revision)",
    ),
    ("file", "file", "not a directory"),
    ("no_config", "no_config", "not a SONAR-LLM directory (no config.json)"),
    (
        "bad_json",
        '{"llama_config": {\n',
        "config.json:2: invalid JSON: Expecting property name enclosed in double quotes",
    ),
    ("no_llama_config", {"embed_dim": 8}, "config.json: missing 'llama_config' object"),
    ("bad_embed_dim", {"llama_config": {}, "embed_dim": 0}, "config.json: 'embed_dim' must be a positive integer"),
    ("no_weights", {"llama_config": {}}, "not a SONAR-LLM directory (no model.safetensors or pytorch_model.bin)"),
]


@pytest.mark.parametrize("config, problem", [c[1:] for c in BAD_PREDICTORS], ids=[c[0] for c in BAD_PREDICTORS])
def test_bad_predictor_directory_is_named_with_its_problem(tmp_path: Path, config: object, problem: str) -> None:
    target = tmp_path / "p"
    if config == "file":
        target.write_text("x")
    elif config == "no_config":
        target.mkdir()
        (target / "model.safetensors").write_bytes(b"")
    elif config is not None:
        _make_predictor(target, config, weights=None)
    conf = tmp_path / "q.toml"
    conf.write_text(_sub('kind = "mini"', 'kind = "sonar"\npredictor = "p"'))
    with pytest.raises(SpecError) as info:
        load_spec(conf)
    assert str(info.value) == f'{conf}:3: backend.predictor: "p" ({target}): {problem}'


# --- file-level errors and the light line finder -------------------------------------------------------------


def test_missing_file_and_non_utf8(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as info:
        load_spec(tmp_path / "absent.toml")
    assert str(info.value) == f"{tmp_path / 'absent.toml'}: no such file"
    bad = tmp_path / "bad.toml"
    bad.write_bytes(b'[backend]\nkind = "\xff"\n')
    with pytest.raises(SpecError) as info:
        load_spec(bad)
    assert str(info.value) == f"{bad}:2: not UTF-8 text (byte 0xff)"
    with pytest.raises(SpecError, match=r": not a regular file: it is a directory$"):
        load_spec(tmp_path)


def test_a_utf8_bom_is_accepted_wherever_a_config_is_read(tmp_path: Path) -> None:
    """Editors on Windows write one; TOML itself rejects it ("Invalid statement")."""
    assert parse_spec("\ufeff" + BASE, "q.toml").experiments[0].name == "a"
    path = tmp_path / "q.toml"
    path.write_bytes(b"\xef\xbb\xbf" + BASE.encode("utf-8"))
    assert load_spec(path).experiments[0].name == "a"


def test_the_maxima_at_their_limit_are_valid() -> None:
    spec = parse_spec(_add("steps = 1_000_000\ndecode_every = 1_000_000\nbeam_size = 64\n"), "q.toml")
    assert (spec.experiments[0].steps, spec.experiments[0].beam_size) == (1_000_000, 64)


def test_error_attributes_let_callers_format_their_own_way() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_add("lr = 0\n"), "q.toml")
    err = info.value
    assert (err.path, err.line, err.where, err.message) == ("q.toml", 13, "experiments[0] (a).lr", "must be > 0, got 0")


def test_line_finder_handles_quoted_names_inline_tables_and_dotted_keys() -> None:
    quoted = BASE.replace("[stories.lily]", '[stories."my story"]') + 'story = "my story"\n'
    text = quoted.replace('["A.", "B.", "C."]', '["A.", "B.", "C."]\ntargets = [0]')
    with pytest.raises(SpecError) as info:
        parse_spec(text, "q.toml")
    assert str(info.value).startswith('q.toml:9: stories."my story".targets[0]: target 0 is not after optimize')

    inline = 'backend = {kind = "mini", device = "tpu"}\n' + BASE.replace('[backend]\nkind = "mini"\n', "")
    with pytest.raises(SpecError) as info:
        parse_spec(inline, "q.toml")
    assert str(info.value).startswith("q.toml:1: backend.device: must be one of")

    dotted = BASE.replace("[stories.lily]", "[stories]").replace("sentences =", "lily.sentences =")
    dotted = dotted.replace('"C."]', '"C."]\nlily.optimize = 5')
    with pytest.raises(SpecError) as info:
        parse_spec(dotted, "q.toml")
    assert str(info.value) == "q.toml:9: stories.lily.optimize: index 5 is outside the story (sentences 0..2)"


def test_long_or_multiline_values_stay_on_one_line() -> None:
    with pytest.raises(SpecError) as info:
        parse_spec(_add('optimizer = """ada\nm and a very long tail that goes on and on"""\n'), "q.toml")
    message = str(info.value)
    assert "\n" not in message
    tail = 'got string "ada\\nm and a very long tail that go..."'
    assert message == f'{EXP}.optimizer: must be one of "adam", "sgd"; {tail}'


def test_spec_module_does_not_import_torch() -> None:
    code = "import sys, engine.spec; assert 'torch' not in sys.modules and 'engine.models.predictor' not in sys.modules"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, env=env)


# --- methods and banks ---------------------------------------------------------------------------------------
METHOD_ERRORS = [
    (
        "bank_missing",
        'bank = "nope.txt"\n',
        "q.toml:13: experiments[0] (a).bank: bank file {d}/nope.txt does not exist",
    ),
    (
        "bank_empty",
        'bank = "empty.txt"\n',
        "q.toml:13: experiments[0] (a).bank: bank file {d}/empty.txt has no sentences (every line is blank)",
    ),
    (
        "nearest_without_bank",
        "nearest = true\n",
        'q.toml:10: experiments[0] (a): nearest = true needs a sentence bank: set bank = "corpus" or the path of a text file',
    ),
    (
        "bank_method_without_bank",
        'method = "bank_swap"\n',
        'q.toml:10: experiments[0] (a): method = "bank_swap" needs a sentence bank: set bank = "corpus" or the path of a'
        " text file",
    ),
    (
        "unknown_method",
        'method = "bank_serch"\n',
        'q.toml:13: experiments[0] (a).method: must be one of "gradient", "bank_search", "bank_swap", "token_swap", "fluent_swap"; got string'
        " \"bank_serch\" (did you mean 'bank_search'?)",
    ),
    ("negative_snap", "snap_every = -1\n", "q.toml:13: experiments[0] (a).snap_every: must be >= 0, got -1"),
    (
        "zero_width",
        'method = "bank_swap"\nbank = "corpus"\nsearch_width = 0\n',
        "q.toml:15: experiments[0] (a).search_width: must be >= 1, got 0",
    ),
    (
        "option_of_another_method",
        "top_k = 3\n",
        "q.toml:13: experiments[0] (a).top_k: is an option of method bank_search, bank_swap, not of method gradient",
    ),
    (
        "unknown_cycle_weight",
        "objective = {cosine = 1.0, cycel = 0.5}\n",
        "q.toml:13: experiments[0] (a).objective: unknown key 'cycel' (did you mean 'cycle'?)",
    ),
    (
        "negative_cycle_weight",
        "objective = {cosine = 1.0, cycle = -0.5}\n",
        "q.toml:13: experiments[0] (a).objective.cycle: must be >= 0, got -0.5",
    ),
    (
        "cycle_alone",
        'objective = "cycle"\n',
        "q.toml:13: experiments[0] (a).objective: cycle alone has no target: add it to another term, e.g. {{cosine = 1.0,"
        " cycle = 0.5}}",
    ),
    (
        "cycle_with_bank_method",
        'method = "bank_search"\nbank = "corpus"\nobjective = {cosine = 1.0, cycle = 0.5}\n',
        "q.toml:15: experiments[0] (a).objective: the cycle term applies to method gradient, not bank_search",
    ),
    (
        "nearest_not_bool",
        'nearest = "yes"\n',
        'q.toml:13: experiments[0] (a).nearest: must be true or false, got string "yes"',
    ),
    (
        "token_swap_n_replace",
        'method = "token_swap"\nn_replace = 2\n',
        "q.toml:14: experiments[0] (a).n_replace: n_replace = 2 is more than the 1 word(s) of init",
    ),
    ("token_swap_topk", 'method = "token_swap"\ntopk = 0\n', "q.toml:14: experiments[0] (a).topk: must be >= 1, got 0"),
    (
        "token_swap_empty_init",
        'method = "token_swap"\n',
        "q.toml:12: experiments[0] (a).init: must be non-empty text",
    ),
    (
        "token_swap_bank_init",
        'method = "token_swap"\n',
        'q.toml:12: experiments[0] (a).init: init = "bank" starts from the bank\'s best sentence: set bank too',
    ),
    ("stop_at_above_one", "stop_at = 1.5\n", "q.toml:13: experiments[0] (a).stop_at: must be <= 1, got 1.5"),
    (
        "unknown_method_option",
        'method = "token_swap"\nsearch_widht = 8\n',
        "q.toml:14: experiments[0] (a): unknown key 'search_widht' (did you mean 'search_width'?)",
    ),
]


@pytest.mark.parametrize("extra, expected", [c[1:] for c in METHOD_ERRORS], ids=[c[0] for c in METHOD_ERRORS])
def test_method_and_bank_errors_name_the_key(extra: str, expected: str, tmp_path: Path) -> None:
    (tmp_path / "empty.txt").write_text("\n  \n", encoding="utf-8")
    base = BASE
    if "empty_init" in expected or "empty text" in expected:
        base = BASE.replace('init = "x"', 'init = " "')
    if "set bank too" in expected:
        base = BASE.replace('init = "x"', 'init = "bank"')
    with pytest.raises(SpecError) as info:
        parse_spec(base + extra, "q.toml", base_dir=tmp_path)
    assert str(info.value) == expected.format(d=tmp_path)


def test_methods_take_their_options_and_defaults_apply_where_they_fit(tmp_path: Path) -> None:
    (tmp_path / "bank.txt").write_text("A cat.\nA dog.\n", encoding="utf-8")
    text = BASE.replace("lr = 0.02", 'lr = 0.02\nsnap_every = 5\ntop_k = 3\nbank = "bank.txt"') + (
        '\n[[experiments]]\nname = "b"\ninit = "y"\nmethod = "bank_search"\n'
    )
    spec = parse_spec(text, "q.toml", base_dir=tmp_path)
    a, b = spec.experiments
    assert a.method == "gradient" and a.options.snap_every == 5 and a.bank == str(tmp_path / "bank.txt")
    assert b.method == "bank_search" and b.options.top_k == 3 and not hasattr(b.options, "snap_every")
