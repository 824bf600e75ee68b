"""The config as the engine reads it: frozen dataclasses, made by :mod:`engine.spec.parser`.

Plain Python (the CLI's start-up imports it). An experiment's ``options`` are
its method's options dataclass (``engine.methods``' ``METHOD.options``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.methods.gradient import GradientOptions


@dataclass(frozen=True)
class Backend:
    kind: str = "mini"  # "mini" | "sonar"
    encoder: str = "embopt_mini_encoder"  # fairseq2 card name
    decoder: str = "embopt_mini_decoder"  # fairseq2 card name
    tokenizer: str = "embopt_mini_encoder"  # card whose tokenizer is used
    # SONAR-LLM directory (absolute), or a hub id "owner/name[@revision]"; None = the shipped mini predictor
    predictor: str | None = None
    device: str = "auto"
    dtype: str = "float32"
    # The fluency model: a causal LM's directory (absolute) or hub id; "none"; None = the backend's default (the
    # shipped mini LM for kind "mini", none for kind "sonar")
    fluency: str | None = None


@dataclass(frozen=True)
class Executor:
    """Where batches run: in the engine thread ("inline") or on a Ray cluster ("ray", engine/run/executors/ray.py)."""

    kind: str = "inline"  # "inline" | "ray"
    address: str = ""  # ray: "" = a private local cluster; "auto" or "host:port" = join an existing one
    workers: int = 0  # ray: 0 = one per GPU (one per CPU core on a machine without GPUs)
    gpus_per_worker: float = 1.0  # ray: GPUs each worker holds where the cluster has GPUs (0.5 packs two per GPU)
    max_attempts: int = 3  # ray: runs of a batch whose worker died, before its experiments fail


@dataclass(frozen=True)
class Story:
    name: str
    sentences: tuple[str, ...]
    optimize: int = 0  # index of the sentence replaced by z
    targets: tuple[int, ...] = (1,)  # indices of the sentences scored, each > optimize
    context: tuple[str, ...] = ()  # sentences put before the story, e.g. "Begin of text."


@dataclass(frozen=True)
class Objective:
    """A weighted sum of terms, e.g. (("cosine", 1.0), ("decoder_ce", 0.1)).

    Terms come in the order of ``engine.scoring.terms.TERMS`` and zero weights are dropped, so
    equal objectives compare equal however the config wrote them.
    """

    weights: tuple[tuple[str, float], ...] = (("cosine", 1.0),)

    @property
    def label(self) -> str:
        if len(self.weights) == 1 and self.weights[0][1] == 1.0:
            return self.weights[0][0]
        return "+".join(f"{w:g}*{name}" for name, w in self.weights)


@dataclass(frozen=True)
class Experiment:
    name: str
    init: str
    story: str = "lily"
    lr: float = 0.02
    steps: int = 100
    optimizer: str = "adam"
    objective: Objective = Objective()
    norm: str | float = "reference"  # "reference" | "none" | a positive number
    decode_every: int = 10
    beam_size: int = 1
    seed: int = 0
    method: str = "gradient"  # a name of engine.methods.METHODS
    bank: str | None = None  # "corpus" or the absolute path of a sentence file
    options: Any = GradientOptions()  # the method's options (its METHOD.options dataclass)
    repeat_of: str | None = None  # the [[experiments]] name this is a repeat of (``repeat`` / ``seeds``), if any


@dataclass(frozen=True)
class Spec:
    path: Path
    backend: Backend
    stories: Mapping[str, Story]
    experiments: tuple[Experiment, ...]
    text: str = field(default="", repr=False, compare=False)  # the TOML exactly as validated
    executor: Executor = Executor()
    rank_by: str = "text_sim"  # what "best" means: engine.results.RANKINGS

    def story_of(self, experiment: Experiment) -> Story:
        return self.stories[experiment.story]
