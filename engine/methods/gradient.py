"""Projected gradient descent on z: the loop, Adam, the projection.

Every experiment of a batch is one row of z [B, D] with its own lr, steps,
optimiser, objective, norm, decode cadence and options. Rows never mix: the
predictor sees one sequence per row, the loss is a sum of per-row losses and
the update below is written per row, so a row ends exactly where it would
alone (every model call sees a fixed number of rows: ``objectives.rowwise``).

One iteration at step k (z_k = z after k updates):
  snap (z <- E(D(z)) every ``snap_every``) -> decode z on cadence (honest
  candidates; the cycle term's fixed target) -> forward (z, or with
  ``nearest`` the bank sentence nearest to z, straight-through) -> sims, loss,
  grads -> Step -> decode predictions on cadence -> finish rows with k == steps
  -> poll stop/skip/pause -> update + project -> k+1
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from engine.methods.method import Method, Stopping, option, refuse_text_terms, require_bank

if TYPE_CHECKING:
    from torch import Tensor

    from engine.methods.batch import Batch, BestText

# Adam as torch.optim.Adam with its defaults (betas, eps, no weight decay, no amsgrad).
BETA1, BETA2, EPS = 0.9, 0.999, 1e-8


@dataclass(frozen=True)
class GradientOptions(Stopping):
    snap_every: int = option(
        0, "every N steps z is replaced by E(D(z)), the embedding of its own decoded text; 0: never", 0, 1_000_000
    )
    nearest: bool = option(
        False, "the forward pass uses the bank sentence nearest to z; the gradient updates z (needs bank)"
    )
    init_noise: float = option(
        0.0,
        "z starts at E(init) plus Gaussian noise this large relative to its norm, drawn from seed; 0: none",
        0.0,
        10.0,
    )


def check(experiment: Any) -> None:
    if experiment.options.nearest:
        require_bank(experiment, "nearest = true")
    refuse_text_terms(experiment)


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
    return z - adam_delta.where(adam, lr * grad)


def project(z: Tensor, radius: Tensor, projected: Tensor) -> Tensor:
    """z scaled to norm ``radius`` [A, 1] on the rows where ``projected`` [A, 1] holds."""
    return (z * (radius / z.norm(dim=1, keepdim=True))).where(projected, z)


def column(values: list[Any], device: Any) -> Tensor:
    import torch

    return torch.tensor(values, device=device).unsqueeze(1)


def run(batch: Batch) -> None:
    import torch

    from engine.events import DONE, FAILED, INTERRUPTED, RUNNING, SKIPPED, Step
    from engine.methods.batch import BestText, offer_texts, show_decodes, start, stop_early
    from engine.scoring.objectives import Weights, rowwise

    rows, scorer = batch.rows, batch.scorer
    experiments = [r.experiment for r in rows]
    device = batch.device
    z = start(batch)
    noisy = [e.options.init_noise > 0 for e in experiments]
    for i, e in enumerate(experiments):
        if noisy[i]:
            z[i] = _perturbed(z[i], e.options.init_noise, e.seed)
    best_z, best_sim = z.clone(), [-math.inf] * len(rows)
    m, v = torch.zeros_like(z), torch.zeros_like(z)
    lr = column([e.lr for e in experiments], device)
    radius = [
        batch.reference_norm if e.norm == "reference" else None if e.norm == "none" else float(e.norm)
        for e in experiments
    ]
    radius_t = column([r or 0.0 for r in radius], device)
    projected = column([r is not None for r in radius], device)
    adam = column([e.optimizer == "adam" for e in experiments], device)
    snap_every = [e.options.snap_every for e in experiments]
    nearest = column([e.options.nearest for e in experiments], device)
    uses_cycle = [dict(e.objective.weights).get("cycle", 0.0) != 0.0 for e in experiments]
    again = z.clone()  # E(D(z)) per row, refreshed on the decode cadence: the cycle term's fixed target
    best = [BestText() for _ in rows]
    z_texts: dict[int, str] = {}  # row -> the text z decoded to at this step

    active = list(range(len(rows)))
    weights_cache: dict[tuple[int, ...], Weights] = {}
    loop_start = time.perf_counter()
    k = 0
    while active:
        snapping = [i for i in active if snap_every[i] and k > 0 and k % snap_every[i] == 0]
        z_texts.clear()
        if snapping:  # z = E(text) now: that text is what z decodes to at this step
            z_texts.update(zip(snapping, _snap(batch, snapping, z, best)))
        due = [i for i in active if k % experiments[i].decode_every == 0 or k == rows[i].steps]
        # Only a cycle term needs z's text before the forward (as its fixed target); otherwise z's decode
        # waits for the predictions and shares their decoder call.
        late = scorer.decoding.spare and not any(uses_cycle[i] for i in due)
        if due and not late:
            fresh = [i for i in due if i not in z_texts]
            z_texts.update(zip(fresh, _decode_rows(batch, fresh, z)))
            texts = [z_texts[i] for i in due]
            _, vectors = offer_texts(scorer, [best[i] for i in due], texts, vectors=any(uses_cycle[i] for i in due))
            if vectors is not None:
                again[torch.tensor(due, device=device)] = vectors

        idx = torch.tensor(active, device=device)
        updating = [i for i in active if k < rows[i].steps]
        key = tuple(active)
        if key not in weights_cache:
            weights_cache[key] = Weights.of([experiments[i].objective for i in active], device)
        x = z[idx]
        picked: list[int] | None = None
        if batch.bank is not None and bool(nearest[idx].any()):
            # Eight rows a call, like every model call (objectives.rowwise): a product's rounding follows its shape.
            picked = rowwise(lambda rows: batch.bank.nearest(rows, k=1)[0], x)[:, 0].tolist()
            x = torch.where(nearest[idx], batch.bank.rows(picked).to(x), x)
        xa = x.clone().requires_grad_(bool(updating))
        with torch.enable_grad() if updating else torch.inference_mode():
            preds = scorer.predictions(xa)
            sims = scorer.sims(preds)
            cycle = (xa, again[idx]) if any(uses_cycle[i] for i in active) else None
            loss = scorer.loss(preds, weights_cache[key], sims=sims, cycle=cycle)
        grad = torch.autograd.grad(loss.sum(), xa)[0] if updating else None
        # One host transfer per step for every row's metrics.
        norms = xa.detach().norm(dim=1, keepdim=True)
        stats = torch.cat([sims.detach(), loss.detach().unsqueeze(1), norms], 1).tolist()
        rate = batch.rate(k, loop_start)
        alive: list[int] = []
        for j, i in enumerate(active):
            row, values = rows[i], stats[j]
            *row_sims, row_loss, row_norm = values
            sim = sum(row_sims) / len(row_sims)
            if not all(map(math.isfinite, values)):
                batch.finish(
                    i, FAILED, error=f"non-finite {'loss' if math.isfinite(sim) else 'similarity'} at step {k}"
                )
                continue
            # Step 0 is the init score ExperimentStarted announced (same z; computed in the first pass).
            announced = k == 0 and row.init_sim is not None and not noisy[i]
            row.trajectory.append(row.init_sim if announced else sim)
            if k == 0:
                row.init_loss = row_loss
            else:
                row.losses.append(row_loss)
                batch.emit(Step(row.experiment.name, k, row.steps, sim, tuple(row_sims), row_loss, row_norm, rate))
            if row.trajectory[-1] > best_sim[i]:  # the z of best_step, kept beside the final one
                best_sim[i], best_z[i] = row.trajectory[-1], z[i]
            alive.append(j)
        rows_shown = [j for j in alive if active[j] in due]
        shown = [active[j] for j in rows_shown]
        shown_preds = preds.detach()[rows_shown]
        decoded = None
        if due and late:  # z's text and the shown predictions' in one decoder call per beam size
            fresh = [i for i in due if i not in z_texts]
            fresh_texts, decoded = _decode_together(batch, fresh, z, shown, shown_preds)
            z_texts.update(zip(fresh, fresh_texts))
            offer_texts(scorer, [best[i] for i in due], [z_texts[i] for i in due])
        if picked is not None:  # the bank sentences the forward pass used are candidates too
            near = [j for j in alive if experiments[active[j]].options.nearest]
            offer_texts(scorer, [best[active[j]] for j in near], batch.bank.texts([picked[j] for j in near]))

        if shown:
            show_decodes(batch, shown, shown_preds, [z_texts[i] for i in shown], k, [best[i] for i in shown], decoded)

        ending = [
            j
            for j in alive
            if k == rows[active[j]].steps
            or (
                active[j] in z_texts
                and active[j] in due
                and stop_early(experiments[active[j]].options, best[active[j]].sim, rows[active[j]].exact_match)
            )
        ]
        if ending:
            _roundtrip(batch, [active[j] for j in ending])
            _end(batch, [active[j] for j in ending], DONE, z, best, best_z)
        still = [active[j] for j in alive if rows[active[j]].status == RUNNING]
        if not still:
            break

        command = batch.poll()
        if command.stop:
            _end(batch, still, INTERRUPTED, z, best, best_z)
            return
        if command.skip:
            _end(batch, [i for i in still if experiments[i].name in command.skip], SKIPPED, z, best, best_z)
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


def _perturbed(z: Tensor, size: float, seed: int) -> Tensor:
    """z plus Gaussian noise of norm ``size`` * ||z||, drawn from ``seed`` alone (whatever shares the batch)."""
    import torch

    noise = torch.randn(z.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float32).to(z)
    return z + noise * (size * z.norm() / noise.norm())


def _end(batch: Batch, which: list[int], status: str, z: Tensor, best: list[BestText], best_z: Tensor) -> None:
    from engine.methods.batch import settle

    if not which:
        return
    settle(batch, which, [best[i] for i in which])
    for i in which:
        batch.rows[i].best_z = best_z[i].tolist()
        batch.finish(i, status, z[i])


def _decode_rows(batch: Batch, which: list[int], vectors: Tensor) -> list[str]:
    """The texts of vectors[which], one decoder call per beam size."""
    import torch

    texts: dict[int, str] = {}
    by_beam: dict[int, list[int]] = {}
    for i in which:
        by_beam.setdefault(batch.rows[i].experiment.beam_size, []).append(i)
    for beam, group in by_beam.items():
        decoded = batch.scorer.decode(vectors[torch.tensor(group, device=vectors.device)].detach(), beam)
        texts.update(zip(group, decoded))
    return [texts[i] for i in which]


def _decode_together(
    batch: Batch, which: list[int], z: Tensor, shown: list[int], preds: Tensor
) -> tuple[list[str], list[list[str]]]:
    """The texts of z[which] and of the predictions [len(shown), T, D] of rows ``shown``, a decoder call per beam."""
    texts: dict[int, str] = {}
    decoded: dict[int, list[str]] = {}
    t, d = preds.shape[1], preds.shape[2]
    for beam in dict.fromkeys(batch.rows[i].experiment.beam_size for i in which + shown):
        zs = [i for i in which if batch.rows[i].experiment.beam_size == beam]
        ps = [j for j, i in enumerate(shown) if batch.rows[i].experiment.beam_size == beam]
        z_part, p_part = batch.scorer.decode_groups([z[zs].detach(), preds[ps].reshape(-1, d)], beam)
        texts.update(zip(zs, z_part))
        decoded.update((j, p_part[n * t : (n + 1) * t]) for n, j in enumerate(ps))
    return [texts[i] for i in which], [decoded[j] for j in range(len(shown))]


def _snap(batch: Batch, which: list[int], z: Tensor, best: list[BestText]) -> list[str]:
    """z <- E(D(z)) on rows ``which``; each text encoded on its own (as init texts are), and a candidate."""
    from engine.methods.batch import offer_texts

    texts = _decode_rows(batch, which, z)
    for i, text in zip(which, texts):
        z[i] = batch.scorer.encode([text])[0]
    offer_texts(batch.scorer, [best[i] for i in which], texts)
    return texts


def _roundtrip(batch: Batch, which: list[int]) -> None:
    """Score E(D(z)) in place of z (the decode of the final z has just been made)."""
    import torch

    rows, scorer = batch.rows, batch.scorer
    texts = [rows[i].decoded_z or "" for i in which]
    again = scorer.encode(texts)
    with torch.inference_mode():
        sims = scorer.sims(scorer.predictions(again)).mean(dim=1).tolist()
    for i, sim in zip(which, sims):
        rows[i].roundtrip_sim = sim


METHOD = Method(
    "gradient",
    "projected gradient descent on z (snapping, nearest projection, the cycle term as options)",
    GradientOptions,
    run,
    check,
)
