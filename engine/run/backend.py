"""The loaded backend: the embedding space, the predictor and the norms of real sentences, loaded once per process.

``norm = "reference"`` projects onto the mean L2 norm of real embeddings: the
story's sentences plus, on the mini backend, a fixed sample of the mini corpus
(:data:`CORPUS_SAMPLE` training sentences). Real SONAR ships no corpus, so
there it is the story alone; give a number (0.207 for TinyStories) to pin it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from engine import events as ev
from engine.models.predictor_dir import parse_hub_id
from engine.spec import Backend, Spec


class BackendError(Exception):
    """The models cannot load (or the cluster that would load them cannot start): ``str(err)`` is one line.

    Nothing that was pending ran: it stays pending, and ``--resume`` tries again once the cause is fixed.
    """


CORPUS_SAMPLE = 256  # real sentences whose mean norm, with the story's, is the "reference" norm (mini backend)
Progress = Callable[[str, float], None]


@dataclass(frozen=True)
class Models:
    """A loaded backend: embedding space, predictor and the norms of a real-sentence sample."""

    backend: Backend
    space: Any  # engine.models.space.EmbeddingSpace
    predictor: Any  # engine.models.predictor.SonarLLMPredictor
    corpus_norms: Any  # Tensor [N] (N may be 0): L2 norms of real sentence embeddings beyond the story
    seconds: float
    predictor_dir: str | None = None  # the directory loaded (a hub id's cache snapshot)
    predictor_revision: str | None = None  # commit hash of that snapshot, when it came from the hub
    fluency: Any = None  # engine.models.fluency.FluencyModel, when the backend has one
    fluency_revision: str | None = None  # commit hash of its snapshot, when it came from the hub

    def encode(self, sentences: Sequence[str]) -> Any:
        """[N, D] float32 sentence embeddings (no gradients)."""
        import torch

        with torch.inference_mode():
            return self.space.encode(list(sentences)).float().clone()

    def decode(self, vectors: Any, beam_size: int = 1) -> list[str]:
        """The text of each vector [N, D] (or [D])."""
        from engine.scoring.scorer import decode_unique

        return decode_unique(self.space, vectors.reshape(-1, vectors.shape[-1]), beam_size)


_models: dict[Backend, Models] = {}
_models_lock = threading.Lock()


def _corpus_sentences(backend: Backend) -> list[str]:
    """A fixed sample of the mini corpus (what the mini models were trained on); none for real SONAR."""
    if backend.kind != "mini":
        return []
    try:
        from engine.mini.corpus import DEFAULT_SEED, generate_corpus
    except ImportError:
        return []
    return generate_corpus(DEFAULT_SEED, 64).train_sentences()[:CORPUS_SAMPLE]


def _predictor_dir(backend: Backend) -> str:
    if backend.predictor is not None:
        return backend.predictor
    from engine.mini import PREDICTOR_DIR

    return str(PREDICTOR_DIR)


def _hub_id(value: str | None) -> tuple[str, str | None] | None:
    """(repo, revision) when a model is named by a hub id: engine.spec makes every directory absolute, so a
    relative value of that form is one, whatever the working directory holds."""
    if value is None or os.path.isabs(value):
        return None
    return parse_hub_id(value)


def _fluency_dir(backend: Backend, progress: Progress) -> tuple[str | None, str | None]:
    """The fluency model's directory (a hub id fetched first) and its snapshot's commit; (None, None) for none."""
    if backend.fluency == "none" or (backend.fluency is None and backend.kind != "mini"):
        return None, None
    if backend.fluency is None:
        from engine.mini.lm import LM_DIR

        return (str(LM_DIR) if LM_DIR.is_dir() else None), None
    hub_id = _hub_id(backend.fluency)
    if hub_id is None:
        return backend.fluency, None
    from engine.models.fluency import LM_LAYOUT, FluencyError
    from engine.models.hub import fetch
    from engine.models.predictor_dir import PredictorError

    try:
        snapshot = fetch(*hub_id, progress=progress, layout=LM_LAYOUT)
    except PredictorError as err:  # said as what it is: the fluency model, not the predictor
        raise FluencyError(f"backend.fluency: {err}") from None
    return str(snapshot.path), snapshot.revision


def load_models(backend: Backend, progress: Progress | None = None) -> Models:
    """Load (once per process and backend config) the space and predictor a spec's backend names."""
    with _models_lock:
        if backend in _models:
            return _models[backend]
        import torch

        from engine.models.predictor import load_predictor
        from engine.models.space import load_space, resolve_device, resolve_dtype

        report = progress or (lambda stage, fraction: None)
        start = time.perf_counter()
        device, dtype = resolve_device(backend.device), resolve_dtype(backend.dtype)
        hub_id, snapshot = _hub_id(backend.predictor), None
        if hub_id is not None:  # first: a missing download fails before the slow sonar import; its bytes get 0-40 %
            from engine.models.hub import fetch

            snapshot = fetch(*hub_id, progress=lambda s, f: report(s, 0.4 * f))
        fluency_dir, fluency_revision = _fluency_dir(backend, lambda s, f: report(s, 0.4 * f))  # as early
        low = 0.4 if snapshot else 0.0
        space = load_space(backend, device=device, dtype=dtype, progress=lambda s, f: report(s, low + (0.8 - low) * f))
        report("predictor", 0.85)
        directory = str(snapshot.path) if snapshot else _predictor_dir(backend)
        predictor = load_predictor(directory, device=device, dtype=dtype)
        predictor.requires_grad_(False)
        if predictor.config.embed_dim != space.dim:
            raise ValueError(
                f"{directory}: predictor embed_dim is {predictor.config.embed_dim}"
                f" but {backend.encoder} makes {space.dim}-d vectors"
            )
        report("reference norms", 0.95)
        sentences = _corpus_sentences(backend)
        norms = space.encode(sentences).float().norm(dim=1) if sentences else torch.zeros(0, device=device)
        revision = snapshot.revision if snapshot else None
        fluency = None
        if fluency_dir is not None:
            from engine.models.fluency import load_fluency

            report("fluency model", 0.97)
            fluency = load_fluency(fluency_dir, backend.fluency or "the mini LM", device, dtype)
        seconds = time.perf_counter() - start
        models = Models(backend, space, predictor, norms, seconds, directory, revision, fluency, fluency_revision)
        _models[backend] = models
        report("ready", 1.0)
        return models


def ready(backend: Backend, models: Models | None, spec: Spec, emit: Callable[[ev.Event], None]) -> Models:
    """Load the backend (or take the injected one) and announce it."""
    import torch

    if models is None:
        emit(ev.BackendLoading("loading models", 0.0))
        models = load_models(backend, progress=lambda stage, fraction: emit(ev.BackendLoading(stage, fraction)))
    # The announced reference norm: corpus sample plus every story of the spec (each batch uses its own story's).
    sentences = [s for story in spec.stories.values() for s in story.sentences]
    norms = models.space.encode(sentences).float().norm(dim=1) if sentences else torch.zeros(0)
    reference = torch.cat([models.corpus_norms.float().cpu(), norms.cpu()])
    emit(
        ev.BackendReady(
            backend=backend.kind,
            device=str(models.space.device),
            dim=int(models.space.dim),
            reference_norm=float(reference.mean()) if reference.numel() else 0.0,
            seconds=round(models.seconds, 3),
            predictor=models.predictor_dir,
            predictor_revision=models.predictor_revision,
            fluency=models.fluency.directory if models.fluency is not None else None,
            fluency_revision=models.fluency_revision,
        )
    )
    return models
