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
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.files import FileRefused, read_regular, size_text

CONFIG_FILE = "config.json"
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
BEGIN_TEXT = "Begin of text."  # the sentence SONAR-LLM puts first when add_begin is set
CONFIG_BYTES = 1 << 20  # a config.json is a few hundred bytes
# transformers' LlamaConfig defaults, for the fields a config.json leaves out.
LLAMA_DEFAULTS = {"hidden_size": 4096, "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32}


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
            raw = json.loads(read_regular(path, CONFIG_BYTES).decode("utf-8"))
        except FileNotFoundError:
            raise PredictorError(f"not a SONAR-LLM directory (no {CONFIG_FILE})") from None
        except FileRefused as err:
            raise PredictorError(f"{CONFIG_FILE}: {err}") from None
        except (OSError, UnicodeDecodeError) as err:
            raise PredictorError(f"cannot read {CONFIG_FILE}: {getattr(err, 'strerror', None) or err}") from None
        except RecursionError:
            raise PredictorError(f"{CONFIG_FILE}: nested too deep") from None
        except json.JSONDecodeError as err:
            raise PredictorError(f"{CONFIG_FILE}:{err.lineno}: invalid JSON: {err.msg}") from None
        if not isinstance(raw, dict) or not isinstance(raw.get("llama_config"), dict):
            raise PredictorError(f"{CONFIG_FILE}: missing 'llama_config' object")
        embed_dim = raw.get("embed_dim", 1024)
        if isinstance(embed_dim, bool) or not isinstance(embed_dim, int) or embed_dim < 1:
            raise PredictorError(f"{CONFIG_FILE}: 'embed_dim' must be a positive integer")
        return cls(dict(raw["llama_config"]), embed_dim, bool(raw.get("add_begin", False)))

    def parameters(self) -> int | None:
        """How many weights the predictor built from this config holds (None when the config's sizes are not integers).

        The Llama body (attention with grouped keys and values, a gated MLP, two
        norms per layer, a final norm) and the two projections; its token table
        is never built (vocab_size 1).
        """
        sizes = {key: self.llama_config.get(key, default) for key, default in LLAMA_DEFAULTS.items()}
        heads = sizes["num_attention_heads"]
        kv_heads = self.llama_config.get("num_key_value_heads", heads)
        if not all(_positive_int(v) for v in (*sizes.values(), kv_heads)):
            return None
        hidden, inner, layers = sizes["hidden_size"], sizes["intermediate_size"], sizes["num_hidden_layers"]
        head_dim = self.llama_config.get("head_dim") or hidden // heads
        if not _positive_int(head_dim):
            return None
        attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
        layer = attention + 3 * hidden * inner + 2 * hidden
        return layers * layer + hidden + 2 * self.embed_dim * hidden + hidden + self.embed_dim

    def write(self, directory: Path) -> None:
        data = {"llama_config": self.llama_config, "embed_dim": self.embed_dim, "add_begin": self.add_begin}
        (directory / CONFIG_FILE).write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def memory_bytes() -> int | None:
    """This machine's physical memory, or None where it cannot be told."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def size_problem(config: PredictorConfig, weights: Path | None) -> str | None:
    """Why the predictor cannot be loaded in this machine's memory, or None.

    Loading holds the weights file and the model built in float32 at once, so
    a config that would need more than the machine has is refused before
    anything is allocated (a hidden_size typo would otherwise end in the OOM killer).
    """
    count, memory = config.parameters(), memory_bytes()
    if count is None or memory is None:
        return None
    needed = 4 * count + (weights.stat().st_size if weights is not None else 0)
    if needed <= memory:
        return None
    return (
        f"{CONFIG_FILE}: a predictor of {count:,} weights needs about {size_text(needed)} to load,"
        f" more than this machine's {size_text(memory)} of memory"
    )


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
        config = PredictorConfig.read(directory)
    except PredictorError as err:
        return str(err)
    weights = weights_file(directory)
    if weights is None:
        return f"not a SONAR-LLM directory (no {' or '.join(WEIGHT_FILES)})"
    return size_problem(config, weights)


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
