"""embopt-tui's engine: optimise sentence embeddings through a next-sentence-embedding predictor, from Python.

A queue runs exactly as ``embopt-tui --no-ui`` runs it; the config is the
same TOML (a file, a string, or a dict of the same shape)::

    import engine

    lily = [
        "Once upon a time, there was a little girl named Lily.",
        "She loved to play outside with her toys.",
    ]
    config = engine.make_config(
        {
            "stories": {"lily": {"sentences": lily}},
            "defaults": {"steps": 20, "decode_every": 10},
            "experiments": [
                {"name": "cheese", "init": "I like cheese."},
                {"name": "tom", "init": "There was a boy named Tom.", "lr": 0.01},
            ],
        }
    )
    rows = engine.run_experiments(config)  # blocking: one results.json row per experiment
    for row in rows:
        print(row["name"], row["final_sim"], row["text_sim"], row["text"])

    backend = engine.load_backend(config)  # the models the config names, loaded once per process
    z = backend.encode(["I like cheese."])  # [1, D] sentence embeddings
    print(backend.decode(z))  # back to text
    print(engine.score_texts(config, "lily", ["There was a boy named Tom."]))  # each text in z's place

``run_experiments(config, runs_dir="runs")`` also writes a run directory (what
``embopt-tui report`` and ``--resume`` read); ``on_event`` receives every
engine event as it happens (:mod:`engine.events`). Nothing heavy is imported
until a function needs it: ``import engine`` is instant.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from engine.events import Event
    from engine.run.backend import Models
    from engine.spec import Spec

__all__ = ["load_backend", "load_config", "make_config", "parse_config", "run_experiments", "score_texts", "text_nll"]


def load_config(path: str | Path) -> Spec:
    """Read and validate a config file; raises :class:`engine.spec.SpecError` (one line naming file, line, key)."""
    from engine.spec import load_spec

    return load_spec(path)


def parse_config(text: str, path: str | Path = "experiments.toml") -> Spec:
    """Validate config text (TOML); relative paths in it start at ``path``'s folder."""
    from engine.spec import parse_spec

    return parse_spec(text, path)


def make_config(data: Mapping[str, Any], path: str | Path = "experiments.toml") -> Spec:
    """Validate a config given as a dict of the TOML's shape (``{"stories": ..., "experiments": [...]}``)."""
    from engine.spec import parse_spec
    from engine.spec.writer import to_toml

    return parse_spec(to_toml(data), path)


def run_experiments(
    config: Spec,
    *,
    on_event: Callable[[Event], None] | None = None,
    runs_dir: str | Path | None = None,
) -> list[dict[str, Any]]:
    """Run every experiment of ``config`` to its end; returns their results.json rows, in queue order.

    ``runs_dir``: also keep a run directory there (``config.toml``, ``events.jsonl``, ``results.*``,
    ``embeddings.safetensors``), as the command line does; a write there that fails stops the run and raises
    ``engine.rundir.store.StorageError``. ``on_event``: called with every event, in order.
    """
    from engine.run.runner import run_queue
    from engine.run.session import Session

    emit = on_event or (lambda event: None)
    if runs_dir is None:
        return [dict(row) for row in run_queue(config, emit).experiments]
    session = Session.from_spec(config, runs_dir, on_event=emit)
    session.run()
    return session.store.rows()


def load_backend(config: Spec) -> Models:
    """The embedding space and predictor ``config`` names (loaded once per process): ``encode``, ``decode``."""
    from engine.run.backend import load_models

    return load_models(config.backend)


def score_texts(config: Spec, story: str, texts: Sequence[str]) -> list[float]:
    """Each text encoded and put in z's place in ``story``: its mean cosine with the targets (``text_sim``)."""
    from engine.run.backend import load_models
    from engine.scoring.problem import build_problem, fast_forward
    from engine.scoring.scorer import Scorer

    if story not in config.stories:
        raise ValueError(f"no story {story!r} in the config (stories: {', '.join(config.stories)})")
    models = load_models(config.backend)
    problem = build_problem(config.stories[story], models.space, models.predictor, need_tokens=False)
    scorer = Scorer(problem, models.space, fast_forward(models.predictor), models.fluency)
    return scorer.score(scorer.encode(texts))[0].tolist()


def text_nll(config: Spec, texts: Sequence[str]) -> list[float]:
    """Each text's mean negative log-likelihood per token under the config's fluency model (``text_nll``)."""
    from engine.run.backend import load_models

    models = load_models(config.backend)
    if models.fluency is None:
        raise ValueError("the config's backend has no fluency model: set [backend] fluency")
    return models.fluency.nll(list(texts), fresh=True)
