"""The config: ``experiments.toml`` -> frozen dataclasses, every error one line naming file, line and key."""

from engine.spec.parser import *  # noqa: F401,F403
from engine.spec.parser import SpecError, load_spec, parse_spec  # noqa: F401
