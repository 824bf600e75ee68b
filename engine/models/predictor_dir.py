"""The SONAR-LLM checkpoint directory layout, readable without torch.

``engine.spec`` validates a predictor path at start-up (before torch is
imported); ``engine.models.predictor`` loads the weights. Both use these names and
this check, so the messages a user sees are the same wherever it fails.

A predictor may also be named by its Hugging Face hub id (``owner/name`` or
``owner/name@revision``); :func:`parse_hub_id` reads that form without the
network, :mod:`engine.models.hub` resolves it to a snapshot directory.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
BEGIN_TEXT = "Begin of text."  # the sentence SONAR-LLM puts first when add_begin is set


HUB_ID_FORM = "owner/name or owner/name@revision"
# Hugging Face's rules for repo ids (huggingface_hub.utils.validate_repo_id), with the owner required;
# a revision is a branch, tag or commit hash (branches may hold slashes: refs/pr/1).
_HUB_PART = r"[A-Za-z0-9](?:[\w.-]*[A-Za-z0-9_])?"
_HUB_ID = re.compile(rf"(?P<repo>{_HUB_PART}/{_HUB_PART})(?:@(?P<revision>[\w.-]+(?:/[\w.-]+)*))?")


class PredictorError(Exception):
    """A directory that is not a loadable SONAR-LLM checkpoint."""


@dataclass(frozen=True)
class PredictorConfig:
    llama_config: dict[str, Any]
    embed_dim: int
    add_begin: bool = False

    @classmethod
    def read(cls, directory: Path) -> PredictorConfig:
        path = directory / CONFIG_FILE
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise PredictorError(f"not a SONAR-LLM directory (no {CONFIG_FILE})") from None
        except (OSError, UnicodeDecodeError) as err:
            raise PredictorError(f"cannot read {CONFIG_FILE}: {getattr(err, 'strerror', None) or err}") from None
        except json.JSONDecodeError as err:
            raise PredictorError(f"{CONFIG_FILE}:{err.lineno}: invalid JSON: {err.msg}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("llama_config"), dict):
            raise PredictorError(f"{CONFIG_FILE}: missing 'llama_config' object")
        embed_dim = raw.get("embed_dim", 1024)
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
            raise PredictorError(f"{CONFIG_FILE}: 'embed_dim' must be a positive integer")
        return cls(dict(raw["llama_config"]), embed_dim, bool(raw.get("add_begin", False)))

    def write(self, directory: Path) -> None:
        data = {"llama_config": self.llama_config, "embed_dim": self.embed_dim, "add_begin": self.add_begin}
        (directory / CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def weights_file(directory: Path) -> Path | None:
    return next((directory / name for name in WEIGHT_FILES if (directory / name).is_file()), None)


def predictor_dir_problem(directory: Path) -> str | None:
    """Why ``directory`` is not a SONAR-LLM checkpoint directory, or None.

    Shapes and weights are checked when the engine loads it.
    """
    if not directory.exists():
        return "predictor directory does not exist"
    if not directory.is_dir():
        return "not a directory"
    try:
        PredictorConfig.read(directory)
    except PredictorError as err:
        return str(err)
    if weights_file(directory) is None:
        return f"not a SONAR-LLM directory (no {' or '.join(WEIGHT_FILES)})"
    return None


def is_predictor_dir(path: str | Path) -> bool:
    return predictor_dir_problem(Path(path)) is None


def parse_hub_id(value: str) -> tuple[str, str | None] | None:
    """``(repo, revision)`` when ``value`` is written as a hub id, else None; no network, no filesystem."""
    match = _HUB_ID.fullmatch(value)
    if match is None:
        return None
    repo, revision = match.group("repo"), match.group("revision")
    if len(repo) > 96 or "--" in repo or ".." in repo or (revision is not None and ".." in revision):
        return None
    return repo, revision
