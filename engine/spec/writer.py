"""A config built in Python written as TOML, so it is validated, saved and resumed exactly like a file.

Enough TOML for a config: tables, arrays of tables, strings, numbers, booleans
and arrays of them. ``tomllib.loads(to_toml(data)) == data`` for such data.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any


def to_toml(data: Mapping[str, Any]) -> str:
    return "\n".join(_table(data, ())).strip() + "\n"


def _table(data: Mapping[str, Any], path: tuple[str, ...]) -> list[str]:
    plain = {k: v for k, v in data.items() if not _is_table(v, path) and not _is_table_array(v)}
    out = [f"{_key(k)} = {_value(v)}" for k, v in plain.items()]
    for key, value in data.items():
        if _is_table(value, path):
            header = ".".join(_key(p) for p in (*path, key))
            body = _table(value, (*path, key))
            # a table of tables needs no header of its own ([stories] before [stories.lily])
            out += body if body and body[0] == "" else ["", f"[{header}]", *body]
        elif _is_table_array(value):
            header = ".".join(_key(p) for p in (*path, key))
            for item in value:
                out += ["", f"[[{header}]]", *_table(item, (*path, key))]
    return out


def _is_table(value: Any, path: tuple[str, ...]) -> bool:
    """A ``[section]`` at the top level, or when it holds arrays or tables; else an inline ``{a = 1}``."""
    if not isinstance(value, Mapping):
        return False
    return not path or any(isinstance(v, (Mapping, list, tuple)) for v in value.values())


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(v, Mapping) for v in value)


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key, ensure_ascii=False)


def _value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    raise TypeError(f"{type(value).__name__} cannot be written as TOML: {value!r}")
