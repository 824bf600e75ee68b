"""``experiments.toml`` -> frozen dataclasses.

All validation happens here, up front; every error names the file and the
line (when it can be found) or key path, in one line:
``<file>:<line>: <key path>: <message>`` or ``<file>: <key path>: <message>``.

Key paths read like the TOML: ``backend.device``, ``defaults.lr``,
``stories.lily.targets[0]``, ``experiments[2] (higher_lr).lr``. List indices
count from 0, like sentence indices; an experiment's name follows its index
once the name itself is valid.

This module must stay light (the CLI imports it at start-up): no torch, no
fairseq2, not even ``engine.models.predictor``.
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from pathlib import Path
from typing import Any

from engine import files
from engine.banks.source import BANK_CORPUS, bank_source_problem, resolve_bank_path
from engine.methods import METHODS, methods_with, option_field, option_keys
from engine.methods.method import Invalid
from engine.models.fluency import lm_dir_problem
from engine.models.predictor_dir import HUB_ID_FORM, parse_hub_id, predictor_dir_problem
from engine.results import RANKINGS
from engine.scoring.terms import SOLO_TERMS, TERMS, TEXT_TERMS
from engine.spec import limits
from engine.spec.config import Backend, Executor, Experiment, Objective, Spec, Story
from engine.spec.where import At, LineFinder, SpecError, choices, describe, key_label, suggest

OPTIMIZERS = ("adam", "sgd")
OBJECTIVES, SOLO_OBJECTIVES = TERMS, SOLO_TERMS
METHOD_NAMES = tuple(METHODS)
BACKENDS = ("mini", "sonar")
NO_FLUENCY = "none"
DEVICES = ("auto", "cpu", "cuda")
DTYPES = ("float32", "bfloat16", "float16")
NORMS = ("reference", "none")  # or a positive number
# Upper bounds (engine.spec.limits): past these a typo (an extra zero, a pasted id) would run for days or fill memory.
MAXIMA = {
    "steps": limits.STEPS,
    "decode_every": limits.DECODE_EVERY,
    "beam_size": limits.BEAM_SIZE,
    "seed": limits.SEED,
    "repeat": limits.REPEAT,
}
BOM = "\ufeff"  # editors on Windows start UTF-8 files with it; TOML itself does not allow it
EXECUTORS = ("inline", "ray")

# (encoder, decoder, tokenizer) card names used when [backend] leaves them out.
DEFAULT_CARDS = {
    "mini": ("embopt_mini_encoder", "embopt_mini_decoder", "embopt_mini_encoder"),
    "sonar": ("text_sonar_basic_encoder", "text_sonar_basic_decoder", "text_sonar_basic_encoder"),
}

# The SONAR-LLM layout as engine.models.predictor reads it. Repeated here because
# that module imports torch, which `--check` should not pay for; a unit test
# keeps the two in agreement.

TOP_KEYS = ("rank_by", "backend", "defaults", "stories", "experiments", "executor")
EXECUTOR_KEYS = ("kind", "address", "workers", "gpus_per_worker", "max_attempts")
BACKEND_KEYS = ("kind", "encoder", "decoder", "tokenizer", "predictor", "fluency", "device", "dtype")
STORY_KEYS = ("sentences", "optimize", "targets", "context")
# Per-experiment settings; all of them may also be given in [defaults].
DEFAULTABLE_KEYS = (
    "story",
    "init",
    "lr",
    "steps",
    "optimizer",
    "objective",
    "norm",
    "decode_every",
    "beam_size",
    "seed",
    "method",
    "bank",
    "repeat",
    "seeds",
    *option_keys(),
)
EXPERIMENT_KEYS = ("name", *DEFAULTABLE_KEYS)


def load_spec(path: str | Path, *, base_dir: str | Path | None = None) -> Spec:
    """Read and validate a config file; raises :class:`SpecError`.

    ``base_dir`` is where relative predictor paths resolve (default: the
    file's folder); a resumed run passes the original config's folder.
    """
    return parse_spec(read_config(path), path, base_dir=base_dir)


def read_config(path: str | Path) -> str:
    """The text of a config file; raises :class:`SpecError` (no such file, not a regular file, too large, not UTF-8)."""
    path = Path(path)
    try:
        raw = files.read_regular(path, limits.CONFIG_BYTES)
    except FileNotFoundError:
        raise SpecError(path, "", "no such file") from None
    except files.FileRefused as err:
        raise SpecError(path, "", str(err)) from None
    except OSError as err:
        raise SpecError(path, "", f"cannot read: {err.strerror or err}") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SpecError(path, "", f"not UTF-8 text (byte 0x{raw[err.start]:02x})", line) from None


def parse_spec(text: str, path: str | Path = "experiments.toml", *, base_dir: str | Path | None = None) -> Spec:
    """Validate TOML text (used by live reload too); raises :class:`SpecError`."""
    path = Path(path)
    text = text.removeprefix(BOM)
    if len(text) > limits.CONFIG_BYTES:
        raise SpecError(
            path, "", f"{len(text):,} characters, more than the {files.size_text(limits.CONFIG_BYTES)} allowed"
        )
    depth, line = limits.nesting(text)
    if depth > limits.NESTING:
        raise SpecError(path, "", f"arrays or tables nested {depth} deep (at most {limits.NESTING})", line)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise _syntax_error(path, text, err) from None
    except RecursionError:  # the scan above should have caught it: still one line, never a traceback
        raise SpecError(path, "", f"arrays or tables nested too deep (at most {limits.NESTING})") from None
    folder = Path(base_dir) if base_dir is not None else path.parent
    return _Parser(path, text, folder).spec(data)


def _syntax_error(path: Path, text: str, err: tomllib.TOMLDecodeError) -> SpecError:
    message = str(err)
    at = re.search(r" \(at line (\d+), column (\d+)\)$", message)
    if at:
        return SpecError(path, "", f"invalid TOML: {message[: at.start()]} (column {at.group(2)})", int(at.group(1)))
    if message.endswith(" (at end of document)"):
        problem = message.removesuffix(" (at end of document)")
        return SpecError(path, "", f"invalid TOML: {problem} (at end of file)", max(1, len(text.splitlines())))
    return SpecError(path, "", f"invalid TOML: {message}")


class _Parser:
    def __init__(self, path: Path, text: str, base_dir: Path):
        self.path = path
        self.text = text
        self.base_dir = base_dir
        self.finder = LineFinder(text)
        self.stories: dict[str, Story] = {}
        self.has_fluency = True  # the backend has a fluency model (set once [backend] is read)

    def fail(self, at: At, message: str) -> SpecError:
        return SpecError(self.path, at.label, message, self.finder.line(at.parts))

    # --- generic checks --------------------------------------------------------------------------------

    def known_keys(self, table: dict[str, Any], at: At, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                hint = suggest(key, allowed)
                tail = f"(did you mean '{hint}'?)" if hint else f"(allowed: {', '.join(allowed)})"
                raise SpecError(self.path, at.label, f"unknown key '{key}' {tail}", self.finder.line(at.key(key).parts))

    def table(self, value: Any, at: At, written: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(at, f"must be a table, written {written}; got {describe(value)}")
        return value

    def text_value(self, value: Any, at: At) -> str:
        if not isinstance(value, str):
            raise self.fail(at, f"must be a string, got {describe(value)}")
        if not value.strip():
            raise self.fail(at, "must be non-empty text")
        if len(value) > limits.TEXT_CHARS:
            raise self.fail(at, f"{len(value):,} characters, more than the {limits.TEXT_CHARS:,} allowed")
        return value

    def choice(self, value: Any, at: At, options: tuple[str, ...]) -> str:
        if not isinstance(value, str) or value not in options:
            raise self.fail(at, f"must be one of {choices(options)}; got {describe(value)}")
        return value

    def number(self, value: Any, at: At, *, minimum: float, strict: bool, maximum: float | None = None) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(at, f"must be a number, got {describe(value)}")
        if not math.isfinite(value):
            raise self.fail(at, f"must be a finite number, got {describe(value)}")
        if value < minimum or (strict and value == minimum):
            raise self.fail(at, f"must be {'>' if strict else '>='} {minimum:g}, got {value!r}")
        if maximum is not None and value > maximum:
            raise self.fail(at, f"must be <= {maximum:g}, got {value!r}")
        return float(value)

    def integer(self, value: Any, at: At, *, minimum: int, maximum: int | None = None) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(at, f"must be an integer, got {describe(value)}")
        if value < minimum:
            raise self.fail(at, f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise self.fail(at, f"must be <= {maximum:_}, got {value}")
        return value

    def text_list(self, value: Any, at: At, *, min_len: int) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise self.fail(at, f"must be an array of strings, got {describe(value)}")
        if len(value) < min_len:
            raise self.fail(at, f"needs at least {min_len} sentences, got {len(value)}")
        if len(value) > limits.SENTENCES:
            raise self.fail(at, f"{len(value):,} sentences, more than the {limits.SENTENCES} allowed")
        return tuple(self.text_value(item, at.item(i)) for i, item in enumerate(value))

    # --- sections ------------------------------------------------------------------------------------------

    def spec(self, data: dict[str, Any]) -> Spec:
        root = At("")
        self.known_keys(data, root, TOP_KEYS)
        backend = self.backend(self.table(data.get("backend"), root.key("backend"), "[backend]"), root.key("backend"))
        self.stories = self.parse_stories(data.get("stories"), root.key("stories"))
        at = root.key("defaults")
        defaults = self.table(data.get("defaults"), at, "[defaults]")
        self.known_keys(defaults, at, DEFAULTABLE_KEYS)
        settings = {key: self.setting(key, value, at.key(key)) for key, value in defaults.items()}
        experiments = self.experiments(data.get("experiments"), settings)
        at = root.key("executor")
        executor = self.executor(self.table(data.get("executor"), at, "[executor]"), at)
        rank_by = self.choice(data.get("rank_by", RANKINGS[0]), root.key("rank_by"), RANKINGS)
        return Spec(self.path, backend, self.stories, experiments, self.text, executor, rank_by)

    def executor(self, raw: dict[str, Any], at: At) -> Executor:
        self.known_keys(raw, at, EXECUTOR_KEYS)
        address = raw.get("address", "")
        if not isinstance(address, str):
            raise self.fail(at.key("address"), f'must be a string ("", "auto" or "host:port"), got {describe(address)}')
        workers = self.integer(raw.get("workers", 0), at.key("workers"), minimum=0, maximum=limits.CLUSTER_WORKERS)
        if not address.strip() and workers > limits.local_workers():
            raise self.fail(
                at.key("workers"),
                f"{workers} workers on a private cluster of this machine's {limits.local_workers()} CPU cores:"
                " at most one per core (each loads the models); join a larger cluster with address",
            )
        return Executor(
            kind=self.choice(raw.get("kind", "inline"), at.key("kind"), EXECUTORS),
            address=address.strip(),
            workers=workers,
            gpus_per_worker=self.number(
                raw.get("gpus_per_worker", 1.0),
                at.key("gpus_per_worker"),
                minimum=0,
                strict=True,
                maximum=limits.GPUS_PER_WORKER,
            ),
            max_attempts=self.integer(
                raw.get("max_attempts", 3), at.key("max_attempts"), minimum=1, maximum=limits.MAX_ATTEMPTS
            ),
        )

    def backend(self, raw: dict[str, Any], at: At) -> Backend:
        self.known_keys(raw, at, BACKEND_KEYS)
        kind = self.choice(raw.get("kind", "mini"), at.key("kind"), BACKENDS)
        cards = {
            key: self.text_value(raw.get(key, default), at.key(key))
            for key, default in zip(("encoder", "decoder", "tokenizer"), DEFAULT_CARDS[kind])
        }
        predictor = None
        if "predictor" in raw:
            predictor = self.predictor(raw["predictor"], at.key("predictor"))
        elif kind == "sonar":
            raise self.fail(
                at.key("predictor"),
                'required when kind = "sonar": a SONAR-LLM checkpoint directory or hub id'
                ' (e.g. "raxtemur/sonar-llm-900m")',
            )
        device = self.choice(raw.get("device", "auto"), at.key("device"), DEVICES)
        dtype = self.choice(raw.get("dtype", "float32"), at.key("dtype"), DTYPES)
        fluency = self.fluency(raw["fluency"], at.key("fluency")) if "fluency" in raw else None
        self.has_fluency = fluency != NO_FLUENCY and (fluency is not None or kind == "mini")
        return Backend(kind, predictor=predictor, device=device, dtype=dtype, fluency=fluency, **cards)

    def fluency(self, value: Any, at: At) -> str:
        """ "none", an absolute directory, or a hub id kept as written (fetched when the engine loads it)."""
        written = self.text_value(value, at)
        if written == NO_FLUENCY:
            return written
        directory = Path(os.path.abspath(self.base_dir / Path(os.path.expanduser(written))))
        if not directory.exists() and parse_hub_id(written) is not None:
            return written
        problem = lm_dir_problem(directory)
        if problem:
            hint = f", nor is it a Hugging Face hub id ({HUB_ID_FORM})" if not directory.exists() else ""
            raise self.fail(at, f"{json.dumps(written)}: {problem}{hint}")
        return str(directory)

    def predictor(self, value: Any, at: At) -> str:
        """An absolute directory, or a hub id kept as written (resolved when the engine loads it)."""
        written = self.text_value(value, at)
        directory = Path(os.path.expanduser(written))
        if not directory.is_absolute():
            directory = self.base_dir / directory
        directory = Path(os.path.abspath(directory))
        if not directory.exists() and parse_hub_id(written) is not None:
            return written
        problem = predictor_dir_problem(directory)
        if problem:
            shown = json.dumps(written) if str(directory) == written else f"{json.dumps(written)} ({directory})"
            if not directory.exists():
                problem = f"{problem}, nor is it a Hugging Face hub id ({HUB_ID_FORM})"
            raise self.fail(at, f"{shown}: {problem}")
        return str(directory)

    def parse_stories(self, raw: Any, at: At) -> dict[str, Story]:
        if raw is None or raw == {}:
            raise self.fail(At(""), "no stories: add a [stories.NAME] table with its sentences")
        stories = self.table(raw, at, "[stories.NAME]")
        if len(stories) > limits.STORIES:
            raise self.fail(at, f"{len(stories):,} stories, more than the {limits.STORIES:,} allowed")
        return {name: self.story(name, value, at.key(name)) for name, value in stories.items()}

    def story(self, name: str, value: Any, at: At) -> Story:
        if not name.strip():
            raise self.fail(at, "a story needs a non-empty name")
        raw = self.table(value, at, f"[stories.{key_label(name)}]")
        self.known_keys(raw, at, STORY_KEYS)
        if "sentences" not in raw:
            raise self.fail(at, "missing required key 'sentences'")
        sentences = self.text_list(raw["sentences"], at.key("sentences"), min_len=2)
        last = len(sentences) - 1
        optimize = self.index(raw.get("optimize", 0), at.key("optimize"), last)
        if "targets" in raw:
            targets = self.targets(raw["targets"], at.key("targets"), optimize, last)
        elif optimize == last:
            raise self.fail(
                at.key("optimize"), f"index {optimize} is the last sentence: no sentence after it is left to score"
            )
        else:
            targets = (optimize + 1,)
        context = self.text_list(raw.get("context", []), at.key("context"), min_len=0)
        if len(sentences) + len(context) > limits.SENTENCES:
            total = len(sentences) + len(context)
            raise self.fail(at, f"{total:,} sentences with the context, more than the {limits.SENTENCES} allowed")
        return Story(name, sentences, optimize, targets, context)

    def index(self, value: Any, at: At, last: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(at, f"must be a sentence index (an integer), got {describe(value)}")
        if not 0 <= value <= last:
            raise self.fail(at, f"index {value} is outside the story (sentences 0..{last})")
        return value

    def targets(self, value: Any, at: At, optimize: int, last: int) -> tuple[int, ...]:
        if not isinstance(value, list):
            raise self.fail(at, f"must be an array of sentence indices, got {describe(value)}")
        if not value:
            raise self.fail(at, "must list at least one sentence index")
        targets: list[int] = []
        for i, item in enumerate(value):
            item_at = at.item(i)
            index = self.index(item, item_at, last)
            if index <= optimize:
                raise self.fail(
                    item_at,
                    f"target {index} is not after optimize = {optimize}: the predictor is causal, "
                    "so only later sentences depend on z",
                )
            if index in targets:
                raise self.fail(item_at, f"target {index} is listed twice")
            targets.append(index)
        return tuple(targets)

    def setting(self, key: str, value: Any, at: At) -> Any:
        """One per-experiment setting, checked where it is written (an experiment or [defaults])."""
        if key == "story":
            name = self.text_value(value, at)
            if name not in self.stories:
                hint = suggest(name, list(self.stories))
                tail = f"did you mean '{hint}'?" if hint else f"stories: {', '.join(self.stories)}"
                raise self.fail(at, f"unknown story '{name}' ({tail})")
            return name
        if key == "init":
            return self.text_value(value, at)
        if key == "lr":
            return self.number(value, at, minimum=0, strict=True)
        if key in ("steps", "decode_every", "beam_size"):
            return self.integer(value, at, minimum=1, maximum=MAXIMA[key])
        if key == "seed":
            return self.integer(value, at, minimum=0, maximum=MAXIMA[key])
        if key == "repeat":
            return self.integer(value, at, minimum=1, maximum=MAXIMA[key])
        if key == "seeds":
            return self.seeds(value, at)
        if key == "optimizer":
            return self.choice(value, at, OPTIMIZERS)
        if key == "objective":
            return self.objective(value, at)
        if key == "norm":
            return self.norm(value, at)
        if key == "method":
            if not isinstance(value, str) or value not in METHODS:
                hint = suggest(value, METHOD_NAMES) if isinstance(value, str) else None
                tail = f" (did you mean '{hint}'?)" if hint else ""
                raise self.fail(at, f"must be one of {choices(METHOD_NAMES)}; got {describe(value)}{tail}")
            return value
        if key == "bank":
            written = self.text_value(value, at)
            problem = bank_source_problem(written, self.base_dir)
            if problem:
                raise self.fail(at, problem)
            return written if written == BANK_CORPUS else str(resolve_bank_path(written, self.base_dir).absolute())
        return self.option(key, value, at)

    def option(self, key: str, value: Any, at: At) -> Any:
        """A method option, checked by the type and minimum its dataclass field declares."""
        spec = option_field(key)
        minimum, maximum = spec.metadata.get("minimum"), spec.metadata.get("maximum")
        if spec.type in (bool, "bool"):
            if not isinstance(value, bool):
                raise self.fail(at, f"must be true or false, got {describe(value)}")
            return value
        if spec.type in (float, "float"):
            number = self.number(value, at, minimum=minimum if minimum is not None else -math.inf, strict=False)
        else:
            number = self.integer(value, at, minimum=int(minimum) if minimum is not None else -(2**63))
        if maximum is not None and number > maximum:
            raise self.fail(at, f"must be <= {maximum:g}, got {value!r}")
        return number

    def seeds(self, value: Any, at: At) -> tuple[int, ...]:
        if not isinstance(value, list) or not value:
            raise self.fail(at, f"must be a non-empty array of seeds (integers), got {describe(value)}")
        if len(value) > MAXIMA["repeat"]:
            raise self.fail(at, f"at most {MAXIMA['repeat']} seeds, got {len(value)}")
        seeds = tuple(self.integer(v, at.item(i), minimum=0, maximum=MAXIMA["seed"]) for i, v in enumerate(value))
        if len(set(seeds)) != len(seeds):
            raise self.fail(at, f"a seed is listed twice: {sorted(seeds)}")
        return seeds

    def objective(self, value: Any, at: At) -> Objective:
        if value == "cycle":
            raise self.fail(at, "cycle alone has no target: add it to another term, e.g. {cosine = 1.0, cycle = 0.5}")
        if isinstance(value, str):
            return Objective(((self.choice(value, at, SOLO_OBJECTIVES), 1.0),))
        if not isinstance(value, dict):
            raise self.fail(
                at,
                f"must be one of {choices(SOLO_OBJECTIVES)} or a table of weights such as "
                f"{{cosine = 1.0, decoder_ce = 0.1}}; got {describe(value)}",
            )
        self.known_keys(value, at, OBJECTIVES)
        weights = {name: self.number(w, at.key(name), minimum=0, strict=False) for name, w in value.items()}
        if not any(w > 0 for name, w in weights.items() if name in SOLO_OBJECTIVES):
            raise self.fail(at, f"needs at least one weight > 0 on a target term ({', '.join(SOLO_OBJECTIVES)})")
        if any(weights.get(term, 0) > 0 for term in TEXT_TERMS) and not self.has_fluency:
            raise self.fail(at, "the fluency and repetition terms need a fluency model: set [backend] fluency")
        return Objective(tuple((name, weights[name]) for name in OBJECTIVES if weights.get(name, 0) > 0))

    def norm(self, value: Any, at: At) -> str | float:
        if isinstance(value, str):
            if value in NORMS:
                return value
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            return self.number(value, at, minimum=0, strict=True)
        raise self.fail(at, f'must be "reference", "none" or a number > 0; got {describe(value)}')

    def experiments(self, raw: Any, settings: dict[str, Any]) -> tuple[Experiment, ...]:
        at = At("experiments", ("experiments",))
        if raw is None or raw == []:
            raise self.fail(At(""), "no experiments: add at least one [[experiments]] table")
        if not isinstance(raw, list):
            raise self.fail(at, f"must be an array of tables, written [[experiments]]; got {describe(raw)}")
        if len(raw) > limits.EXPERIMENTS:
            raise self.fail(at, f"{len(raw):,} experiments, more than the {limits.EXPERIMENTS:,} a queue may hold")
        seen: dict[str, str] = {}
        experiments = []
        for i, value in enumerate(raw):
            for experiment in self.experiment(value, At(f"experiments[{i}]", ("experiments", i)), settings):
                if experiment.name in seen:
                    label = f"experiments[{i}] ({experiment.name})"
                    where = At(f"{label}.name", ("experiments", i, "name"))
                    also = seen[experiment.name]
                    raise self.fail(where, f"duplicate experiment name '{experiment.name}' (also {also})")
                seen[experiment.name] = f"experiments[{i}]"
                experiments.append(experiment)
        return tuple(experiments)

    def experiment(self, value: Any, at: At, settings: dict[str, Any]) -> list[Experiment]:
        """One [[experiments]] table: one experiment, or one per seed with ``repeat`` / ``seeds``."""
        raw = self.table(value, at, "[[experiments]]")
        if "name" not in raw:
            raise self.fail(at, "missing required key 'name'")
        name = self.text_value(raw["name"], at.key("name"))
        if name != name.strip() or re.search(r"[/\\\x00-\x1f\x7f-\x9f\u2028\u2029]", name):
            raise self.fail(
                at.key("name"), f"must have no surrounding spaces, slashes or control characters; got {describe(name)}"
            )
        at = At(f"{at.label} ({name})", at.parts)
        self.known_keys(raw, at, EXPERIMENT_KEYS)
        values = dict(settings)
        values.update({key: self.setting(key, v, at.key(key)) for key, v in raw.items() if key != "name"})
        if "init" not in values:
            raise self.fail(at, "missing required key 'init' (the text z starts from)")
        if "story" not in values:
            if len(self.stories) != 1:
                raise self.fail(
                    at, f"which story? set 'story' here or in [defaults] (stories: {', '.join(self.stories)})"
                )
            values["story"] = next(iter(self.stories))
        repeat, seeds = values.pop("repeat", None), values.pop("seeds", None)
        if repeat is not None and seeds is not None:
            raise self.fail(at.key("seeds"), "give repeat or seeds, not both")
        if seeds is None and (repeat or 1) > 1:
            seeds = tuple(range(values.get("seed", 0), values.get("seed", 0) + repeat))
            if seeds[-1] > MAXIMA["seed"]:
                raise self.fail(at.key("repeat"), f"seeds {seeds[0]}..{seeds[-1]} go past {MAXIMA['seed']}")
        if seeds is None:
            return [self.with_method(values, raw, at, name)]
        # each seed its own experiment, named so that the repeats group: name@seed
        return [self.with_method(dict(values, seed=seed, repeat_of=name), raw, at, f"{name}@{seed}") for seed in seeds]

    def with_method(self, values: dict[str, Any], raw: dict[str, Any], at: At, name: str) -> Experiment:
        """Split the method's options from the other settings and check the method's own rules."""
        method = METHODS[values.get("method", "gradient")]
        fields = method.option_fields()
        for key in raw:
            if key in option_keys() and key not in fields:
                owners = ", ".join(methods_with(key))
                raise self.fail(at.key(key), f"is an option of method {owners}, not of method {method.name}")
        # [defaults] may set options of several methods: each experiment takes those of its own.
        chosen = {k: values.pop(k) for k in list(values) if k in option_keys()}
        options = method.options(**{k: v for k, v in chosen.items() if k in fields})
        if method.needs_fluency and not self.has_fluency:
            raise self.fail(
                at.key("method"), f"{method.name} reads texts through a fluency model: set [backend] fluency"
            )
        experiment = Experiment(name=name, options=options, **values)
        try:
            method.check(experiment)
        except Invalid as err:
            raise self.fail(at.key(err.key) if err.key else at, err.message) from None
        return experiment
