"""The docs say what the code does, where a machine can check it: config keys, methods, the Python example."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import engine
from engine.methods import METHODS
from engine.spec import parser

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
TABLES = ("backend", "defaults", "stories", "experiments", "executor")  # the top-level keys that are tables


def documented_keys() -> set[str]:
    """The keys of docs/configuration.md's tables: the first cell of each row, written `key`."""
    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, flags=re.M))


def accepted_keys() -> set[str]:
    return {
        *(key for key in parser.TOP_KEYS if key not in TABLES),
        *parser.BACKEND_KEYS,
        *parser.EXECUTOR_KEYS,
        *parser.STORY_KEYS,
        *parser.EXPERIMENT_KEYS,
    }


def test_every_config_key_is_documented_and_every_documented_key_is_accepted() -> None:
    documented, accepted = documented_keys(), accepted_keys()
    assert accepted - documented == set(), "keys the parser accepts that docs/configuration.md does not describe"
    assert documented - accepted == set(), "keys docs/configuration.md describes that the parser rejects"
    sections = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for table in TABLES:
        assert f"[{table}" in sections, f"no section for [{table}]"


def test_every_method_is_documented() -> None:
    methods = (DOCS / "methods.md").read_text(encoding="utf-8")
    config = (DOCS / "configuration.md").read_text(encoding="utf-8")
    for name in METHODS:
        assert re.search(rf"^- \*\*`{name}`\*\*", methods, flags=re.M), f"docs/methods.md does not describe {name}"
        assert f'`"{name}"`' in config, f"docs/configuration.md does not list method {name}"


def python_block(markdown: str) -> str:
    return markdown.split("```python\n", 1)[1].split("```", 1)[0]


def docstring_example() -> str:
    block = engine.__doc__.split("::\n\n", 1)[1].split("\n\n``", 1)[0]
    return textwrap.dedent(block) + "\n"


def test_the_python_example_is_one_text_in_the_readme_the_docs_and_the_docstring() -> None:
    readme = python_block((REPO / "README.md").read_text(encoding="utf-8"))
    docs = python_block((DOCS / "python.md").read_text(encoding="utf-8"))
    assert readme == docs == docstring_example()


def test_the_python_example_runs_as_written(tmp_path: Path) -> None:
    example = python_block((REPO / "README.md").read_text(encoding="utf-8"))
    out = subprocess.run(
        [sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True, timeout=300
    )  # a fresh interpreter, outside the repository: as a notebook would
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert [line.split()[0] for line in lines[:2]] == ["cheese", "tom"]
    assert all(len(line.split()) >= 4 for line in lines[:2])  # name, final_sim, text_sim, text
    assert lines[2].startswith("['") and lines[3].startswith("[")
    assert -1.0 <= float(lines[3].strip("[]")) <= 1.0


def test_every_bound_is_stated_in_the_limits_table() -> None:
    """Each maximum --check enforces is in docs/configuration.md's Limits table, with its number."""
    from engine.methods import option_field
    from engine.spec import limits

    text = (DOCS / "configuration.md").read_text(encoding="utf-8")
    table = text[text.index("## Limits") : text.index("## Errors")]
    bounds = {
        "experiments": limits.EXPERIMENTS,
        "stories": limits.STORIES,
        "sentences of a story": limits.SENTENCES,
        "one text": limits.TEXT_CHARS,
        "nesting": limits.NESTING,
        "`beam_size`": limits.BEAM_SIZE,
        "`steps`": limits.STEPS,
        "`[executor] workers`": limits.CLUSTER_WORKERS,
        "`max_attempts`": limits.MAX_ATTEMPTS,
    }
    for key in ("search_width", "topk", "n_replace", "buffer_size", "top_k"):
        bounds[f"`{key}`"] = int(option_field(key).metadata["maximum"])
    rows = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    for what, bound in bounds.items():
        row = next((line for head, line in rows.items() if head.startswith(what)), None)
        assert row is not None, f"no Limits row for {what}"
        assert f"{bound:,}" in row, f"Limits row for {what} does not state {bound:,}"
