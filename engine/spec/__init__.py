"""The config: ``experiments.toml`` -> frozen dataclasses, every error one line naming file, line and key.

:mod:`~engine.spec.config` holds the dataclasses, :mod:`~engine.spec.parser`
the validation, :mod:`~engine.spec.limits` its bounds, :mod:`~engine.spec.where` how an error names its place,
:mod:`~engine.spec.writer` a config built in Python written as TOML.
Plain Python: the CLI imports it at start-up.
"""

from engine.spec.config import Backend, Executor, Experiment, Objective, Spec, Story
from engine.spec.parser import DEFAULT_CARDS, OBJECTIVES, load_spec, parse_spec, read_config
from engine.spec.where import SpecError

__all__ = [
    "DEFAULT_CARDS",
    "OBJECTIVES",
    "Backend",
    "Executor",
    "Experiment",
    "Objective",
    "Spec",
    "SpecError",
    "Story",
    "load_spec",
    "parse_spec",
    "read_config",
]
