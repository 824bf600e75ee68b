"""The projected-gradient loop over a batch of experiments.

Every experiment of a batch shares the story (and so the constant part of the
predictor's input); each is one row of z [B, D] with its own lr, steps,
optimiser, objective, norm and decode cadence. Rows never mix: the predictor
sees one sequence per row, the loss is a sum of per-row losses and the update
below is written per row, so a row ends exactly where it would alone.

Rows are also computed identically whatever shares their batch: every model
call sees a fixed number of rows (``objectives.rowwise``) and each init text is
encoded on its own, because Adam's normalised steps grow last-bit rounding
differences into visible ones on a trained model.

One iteration at step k (z_k = z after k updates):
  forward z_k -> sims, loss (and grads) -> Step event -> decode on cadence ->
  finish rows with k == steps -> poll stop/skip/pause -> update + project -> k+1
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from engine.events import (
    DONE,
    FAILED,
    INTERRUPTED,
    RUNNING,
    SKIPPED,
    Decoded,
    Event,
    ExperimentStarted,
    Step,
)
from engine.fast_llama import lean_forward
from engine.objectives import TargetTokens, Weights, cosine_sims, objective_loss, rowwise
from engine.predictors import BEGIN_TEXT
from engine.results import Row, result_row
from engine.spec import Experiment, Story

# Adam as torch.optim.Adam with its defaults (betas, eps, no weight decay, no amsgrad).
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8
MAX_DECODE_LEN = 64
Poll = Callable[[], "str | frozenset[str] | None"]  # between steps: "stop", names to skip, or None


@dataclass(frozen=True)
class Problem:
    """What is constant for a batch: the story around z, embedded once."""

    prefix: Tensor  # [P, D] context (+ BEGIN_TEXT) and the sentences before z, model dtype
    suffix: Tensor  # [S, D] the sentences after z that later targets need
    targets: Tensor  # [T, D] float32 embeddings of the scored sentences
    positions: Tensor  # [T] output position predicting each target
    target_texts: tuple[str, ...]
    oracle: Tensor  # [D] the true embedding of the replaced sentence
    story_norms: Tensor  # [N] L2 norms of the story's sentence embeddings
    tokens: TargetTokens | None  # target tokens, only when some row uses decoder_ce


def build_problem(story: Story, space: Any, predictor: Any, *, need_tokens: bool) -> Problem:
    prefix_texts = list(story.context)
    if getattr(predictor.config, "add_begin", False) and prefix_texts[:1] != [BEGIN_TEXT]:
        prefix_texts.insert(0, BEGIN_TEXT)
    offset = len(prefix_texts)
    positions = [offset + t - 1 for t in story.targets]
    if min(positions) < 0:
        raise ValueError(f"story {story.name!r}: target 0 has no preceding sentence to predict it from")
    embedded = space.encode(prefix_texts + list(story.sentences)).to(dtype=space.dtype)
    context, sentences = embedded[:offset], embedded[offset:]
    last = max(max(story.targets), story.optimize + 1)  # sentences at indices >= last are never read
    predictor_dtype = next(predictor.parameters()).dtype
    tokens = None
    if need_tokens:
        ids, lens = space.tokenize_targets([story.sentences[t] for t in story.targets])
        tokens = TargetTokens(ids, lens)
    return Problem(
        prefix=torch.cat([context, sentences[: story.optimize]]).to(predictor_dtype),
        suffix=sentences[story.optimize + 1 : last].to(predictor_dtype),
        targets=sentences[list(story.targets)].float(),
        positions=torch.tensor(positions, device=embedded.device),
        target_texts=tuple(story.sentences[t] for t in story.targets),
        oracle=sentences[story.optimize].float(),
        story_norms=sentences.float().norm(dim=1),
        tokens=tokens,
    )


def predict(model: Callable[[Tensor], Tensor], problem: Problem, z: Tensor) -> Tensor:
    """[A, T, D] float32 predictions of the targets with z [A, D] in place of the replaced sentence.

    ``model`` is the predictor or its :func:`fast_forward` (same function, fewer operations).
    """
    a = z.shape[0]
    seq = torch.cat(
        [
            problem.prefix.expand(a, -1, -1),
            z.to(problem.prefix.dtype).unsqueeze(1),
            problem.suffix.expand(a, -1, -1),
        ],
        dim=1,
    )
    return model(seq)[:, problem.positions].float()


_fast: "weakref.WeakKeyDictionary[Any, Callable[[Tensor], Tensor]]" = weakref.WeakKeyDictionary()


def fast_forward(predictor: Any) -> Callable[[Tensor], Tensor]:
    """The predictor's lean forward (engine.fast_llama) when its config allows, else the predictor; made once."""
    if predictor not in _fast:
        try:
            lean = lean_forward(predictor)
        except (AttributeError, TypeError, ValueError):  # a predictor shaped unlike SONAR-LLM: its own forward
            lean = None
        _fast[predictor] = lean or predictor
    return _fast[predictor]


def optimizer_step(z: Tensor, grad: Tensor, m: Tensor, v: Tensor, lr: Tensor, adam: Tensor, step: int) -> Tensor:
    """z after one step, per row: Adam exactly as torch.optim.Adam (defaults) or plain SGD.

    ``lr`` [A, 1] and ``adam`` [A, 1] (bool) are per row; every row of a batch
    is at the same ``step`` (1-based) because a batch starts together. The
    moments ``m``, ``v`` update in place (SGD rows carry them unused).
    """
    m.lerp_(grad, 1 - BETA1)
    v.mul_(BETA2).addcmul_(grad, grad, value=1 - BETA2)
    denom = (v.sqrt() / (1 - BETA2**step) ** 0.5).add_(EPS)
    adam_delta = (lr / (1 - BETA1**step)) * (m / denom)
    return z - torch.where(adam, adam_delta, lr * grad)


def project(z: Tensor, radius: Tensor, projected: Tensor) -> Tensor:
    """z scaled to norm ``radius`` [A, 1] on the rows where ``projected`` [A, 1] holds."""
    return torch.where(projected, z * (radius / z.norm(dim=1, keepdim=True)), z)


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0]}" if text else type(err).__name__


def optimize_batch(
    experiments: Sequence[Experiment],
    story: Story,
    space: Any,
    predictor: Any,
    *,
    emit: Callable[[Event], None],
    on_finished: Callable[[dict[str, Any]], None],
    poll: Poll = lambda: None,
    corpus_norms: Tensor | None = None,
) -> list[dict[str, Any]]:
    """Run one batch to its end (or until ``poll`` says stop/skip); returns result rows in batch order.

    ``on_finished`` gets each row's result the moment that row ends (done,
    failed, interrupted or skipped), so the queue can move on while others run.
    """
    start = time.perf_counter()
    rows = [Row(e, e.steps) for e in experiments]
    results: dict[int, dict[str, Any]] = {}

    def finish(i: int, status: str, z_row: Tensor | None = None, error: str | None = None) -> None:
        row = rows[i]
        row.status, row.error, row.seconds = status, error, time.perf_counter() - start
        if z_row is not None:
            row.z = z_row.tolist()
        results[i] = result_row(row.experiment, story, status, row)
        on_finished(results[i])

    try:
        _run(rows, story, space, predictor, emit, finish, poll, corpus_norms, start)
    except Exception as err:  # a batch-wide failure (decoder, predictor, OOM) fails what was still running
        for i, row in enumerate(rows):
            if i not in results:
                finish(i, FAILED, error=_one_line(err))
    return [results[i] for i in range(len(rows))]


def _run(
    rows: list[Row],
    story: Story,
    space: Any,
    predictor: Any,
    emit: Callable[[Event], None],
    finish: Callable[..., None],
    poll: Poll,
    corpus_norms: Tensor | None,
    start: float,
) -> None:
    experiments = [r.experiment for r in rows]
    device = space.device
    predictor.requires_grad_(False)  # only z gets gradients; no optimiser state for weights
    model = fast_forward(predictor)
    need_tokens = any(dict(e.objective.weights).get("decoder_ce", 0.0) != 0.0 for e in experiments)
    problem = build_problem(story, space, predictor, need_tokens=need_tokens)
    real_norms = [problem.story_norms] + ([corpus_norms.to(device)] if corpus_norms is not None else [])
    reference_norm = float(torch.cat(real_norms).mean())

    # Optimiser state in float32 whatever the model dtype: z, Adam moments, per-row settings.
    # One init text per encoder call: a batch pads to its longest sentence, which moves the last bits.
    inits = {text: space.encode([text]).float() for text in dict.fromkeys(e.init for e in experiments)}
    z = torch.cat([inits[e.init] for e in experiments])
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    lr = torch.tensor([e.lr for e in experiments], device=device).unsqueeze(1)
    radius = [
        reference_norm if e.norm == "reference" else None if e.norm == "none" else float(e.norm) for e in experiments
    ]
    radius_t = torch.tensor([r or 0.0 for r in radius], device=device).unsqueeze(1)
    projected = torch.tensor([r is not None for r in radius], device=device).unsqueeze(1)
    adam = torch.tensor([e.optimizer == "adam" for e in experiments], device=device).unsqueeze(1)
    names = tuple(e.name for e in experiments)

    with torch.inference_mode():  # init and oracle scores in one pass
        both = torch.cat([z, problem.oracle.unsqueeze(0)])
        first = cosine_sims(rowwise(lambda chunk: predict(model, problem, chunk), both), problem.targets)
        first_mean = first.mean(dim=1).tolist()
    oracle_sim = first_mean[-1]
    for row, sim in zip(rows, first_mean):
        row.init_sim, row.oracle_sim, row.status = sim, oracle_sim, RUNNING
        emit(ExperimentStarted(row.experiment.name, row.steps, names, sim, oracle_sim, problem.target_texts))

    active = list(range(len(rows)))
    weights_cache: dict[tuple[int, ...], Weights] = {}
    loop_start = time.perf_counter()
    k = 0
    while active:
        idx = torch.tensor(active, device=device)
        updating = [i for i in active if k < rows[i].steps]
        key = tuple(active)
        if key not in weights_cache:
            weights_cache[key] = Weights.of([experiments[i].objective for i in active], device)
        za = z[idx].clone().requires_grad_(bool(updating))
        with torch.enable_grad() if updating else torch.inference_mode():
            preds = rowwise(lambda chunk: predict(model, problem, chunk), za)
            sims = cosine_sims(preds, problem.targets)
            loss = objective_loss(
                preds, problem.targets, weights_cache[key], sims=sims, scorer=space, tokens=problem.tokens
            )
        grad = torch.autograd.grad(loss.sum(), za)[0] if updating else None
        # One host transfer per step for every row's metrics.
        norms = za.detach().norm(dim=1, keepdim=True)
        stats = torch.cat([sims.detach(), loss.detach().unsqueeze(1), norms], 1).tolist()
        rate = k / max(time.perf_counter() - loop_start, 1e-9)
        alive: list[int] = []
        for j, i in enumerate(active):
            row, values = rows[i], stats[j]
            *row_sims, row_loss, row_norm = values
            sim = sum(row_sims) / len(row_sims)
            if not all(map(math.isfinite, values)):
                finish(i, FAILED, error=f"non-finite {'loss' if math.isfinite(sim) else 'similarity'} at step {k}")
                continue
            # Step 0 is the init score ExperimentStarted announced (same z; computed in the first pass).
            row.trajectory.append(row.init_sim if k == 0 and row.init_sim is not None else sim)
            if k > 0:
                emit(Step(row.experiment.name, k, row.steps, sim, tuple(row_sims), row_loss, row_norm, rate))
            alive.append(j)

        due = [j for j in alive if k % rows[active[j]].experiment.decode_every == 0 or k == rows[active[j]].steps]
        if due:
            _decode(rows, [active[j] for j in due], za.detach()[due], preds.detach()[due], problem, space, emit, k)

        ending = [j for j in alive if k == rows[active[j]].steps]
        if ending:
            _roundtrip(rows, [active[j] for j in ending], problem, space, model)
            for j in ending:
                finish(active[j], DONE, za.detach()[j])
        still = [active[j] for j in alive if k < rows[active[j]].steps]
        if not still:
            break

        command = poll()
        if command == "stop":
            for i in still:
                finish(i, INTERRUPTED, z[i])
            return
        if command:
            for i in [i for i in still if rows[i].experiment.name in command]:
                finish(i, SKIPPED, z[i])
            still = [i for i in still if rows[i].status == RUNNING]
            if not still:
                break

        # Step the rows that have steps to go; finished and failed rows keep their z.
        assert grad is not None
        sel = torch.tensor(still, device=device)
        g = grad[torch.tensor([active.index(i) for i in still], device=device)]
        ms, vs = m[sel], v[sel]
        zs = optimizer_step(z[sel], g, ms, vs, lr[sel], adam[sel], k + 1)
        z[sel], m[sel], v[sel] = project(zs, radius_t[sel], projected[sel]), ms, vs
        active = still
        k += 1


def _decode(
    rows: list[Row], which: list[int], z: Tensor, preds: Tensor, problem: Problem, space: Any,
    emit: Callable[[Event], None], k: int,
) -> None:
    """Decode z and every prediction of the given rows, one decoder call per beam size."""
    t = preds.shape[1]
    by_beam: dict[int, list[int]] = {}
    for j, i in enumerate(which):
        by_beam.setdefault(rows[i].experiment.beam_size, []).append(j)
    for beam, js in by_beam.items():
        sel = torch.tensor(js, device=z.device)
        texts = decode_unique(space, torch.cat([z[sel], preds[sel].reshape(-1, preds.shape[2])]), beam)
        z_texts, pred_texts = texts[: len(js)], texts[len(js) :]
        for n, j in enumerate(js):
            row = rows[which[j]]
            row.decoded_z = z_texts[n]
            row.decoded_predictions = pred_texts[n * t : (n + 1) * t]
            row.exact_match = [p.strip() == s.strip() for p, s in zip(row.decoded_predictions, problem.target_texts)]
            emit(Decoded(
                row.experiment.name, k, row.decoded_z, tuple(row.decoded_predictions), problem.target_texts,
                tuple(row.exact_match),
            ))


def decode_unique(space: Any, vectors: Tensor, beam_size: int) -> list[str]:
    """``space.decode`` of each row, decoding bit-identical rows once.

    Queues often hold rows that coincide: every row starting from the same
    init text at step 0, and experiments differing only in ``steps`` until the
    shorter one ends. Each row decodes on its own (batching does not change a
    decode), so sharing the text is exact.
    """
    unique, inverse = torch.unique(vectors, dim=0, return_inverse=True)
    if unique.shape[0] == vectors.shape[0]:
        return space.decode(vectors, beam_size=beam_size, max_len=MAX_DECODE_LEN)
    texts = space.decode(unique, beam_size=beam_size, max_len=MAX_DECODE_LEN)
    return [texts[i] for i in inverse.tolist()]


def _roundtrip(
    rows: list[Row], which: list[int], problem: Problem, space: Any, model: Callable[[Tensor], Tensor]
) -> None:
    """Score E(D(z)) in place of z (the decode of the final z has just been made)."""
    texts = [rows[i].decoded_z or "" for i in which]
    with torch.inference_mode():
        again = space.encode(texts).float()
        sims = cosine_sims(predict(model, problem, again), problem.targets).mean(dim=1).tolist()
    for i, sim in zip(which, sims):
        rows[i].roundtrip_sim = sim
