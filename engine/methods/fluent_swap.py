"""Fluent swap: new sentences that read as language and make the predictor say the targets, with the trade-off shown.

Sentences are edited word by word, as a language model reads them. From the init sentence (or, with
``init = "bank"``, the bank's best sentence for the story), every member of a row's population (``population`` of
them, with fluency weights log-spaced from ``weight_min`` to ``weight_max``, as EPO's) proposes ``search_width``
edits of its sentence each step, drawn in turn from three sources: a word the task gradient through the SONAR
encoder ranks best at that place (the whole-word pieces of the gradient of the objective with respect to the
one-hot input, as token swap ranks tokens), a word the fluency model finds likely after the words before it
(FLRT's proposals from the model itself), each replacing, inserting or deleting a word; and (``resample``) the
sentence's end rewritten by sampling the fluency model from a random word on (BEAST's readability from the
model's own samples). Every candidate is scored exactly: for the task through the Scorer, and for fluency by its
mean NLL per token under the fluency model. Each member moves to its best candidate by task loss + its weight *
NLL (+ FLRT's repetition penalty when the objective weights ``repetition``); every ``restart_every`` steps the
member furthest behind restarts from a random sentence of the front.

The row's own choice (``text``, ``text_sim``) is the candidate that minimises its configured objective (the
``fluency`` and ``repetition`` terms included when it weights them); ``front`` lists the candidates that no other
beats on both similarity and NLL, best similarity first, each rescored from scratch when the row ends.
Randomness comes from the experiment's ``seed`` alone.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from operator import itemgetter
from typing import TYPE_CHECKING, Any, TypeVar

from engine.methods.method import Invalid, Method, Stopping, bank_init, option, refuse_cycle

if TYPE_CHECKING:
    from torch import Tensor

    from engine.methods.batch import Batch

T = TypeVar("T")

FRONT_KEPT = 40  # at most this many points of a front are kept in a row (evenly along it)
TOP_SHOWN = 10
_pieces: dict[int, dict[int, str]] = {}  # id(space) -> {piece id: the whole word it is}


@dataclass(frozen=True)
class FluentSwapOptions(Stopping):
    population: int = option(8, "searches per row, each with its own fluency weight (log-spaced)", 1, 64)
    weight_min: float = option(
        0.1, "the fluency weight of the first search (NLL per token, against the task loss)", 0.0, 1000.0
    )
    weight_max: float = option(10.0, "the fluency weight of the last search", 0.0, 1000.0)
    search_width: int = option(16, "edits each search proposes and scores per step", 1, 1024)
    topk: int = option(16, "words proposed per position by each source: the task gradient, the fluency model", 1, 1024)
    insert: bool = option(True, "propose inserting a word (replacing one is always proposed)")
    delete: bool = option(True, "propose deleting a word")
    resample: bool = option(True, "propose the sentence's end rewritten by the fluency model, sampled from a word on")
    restart_every: int = option(10, "every N steps the search furthest behind restarts from the front; 0: never", 0)


def check(experiment: Any) -> None:
    refuse_cycle(experiment)
    options = experiment.options
    if options.weight_min > options.weight_max:
        raise Invalid("weight_min", f"is above weight_max ({options.weight_min:g} > {options.weight_max:g})")
    bank_init(experiment)


def weights_of(options: Any) -> list[float]:
    """The population's fluency weights, log-spaced (linear when the smallest is 0)."""
    n, low, high = options.population, options.weight_min, options.weight_max
    if n == 1:
        return [high]
    if low <= 0:
        return [low + (high - low) * i / (n - 1) for i in range(n)]
    return [low * (high / low) ** (i / (n - 1)) for i in range(n)]


@dataclass
class Scored:
    sim: float
    task: float  # the objective without its text terms
    nll: float
    repetition: float


@dataclass
class Member:
    weight: float
    text: str
    value: float = math.inf  # task + weight * nll (+ the repetition term)


@dataclass
class Search:
    """One row's populations and everything it scored."""

    members: list[Member]
    rng: random.Random
    fluency_weight: float  # the objective's own weights of the text terms: the row's choice
    repetition_weight: float
    seen: dict[str, Scored] = field(default_factory=dict)

    def choice_value(self, s: Scored) -> float:
        return s.task + self.fluency_weight * s.nll + self.repetition_weight * s.repetition

    def member_value(self, member: Member, s: Scored) -> float:
        return s.task + member.weight * s.nll + self.repetition_weight * s.repetition

    def choice(self) -> str:
        return min(self.seen, key=lambda t: self.choice_value(self.seen[t]))

    def front(self) -> list[str]:
        """The texts no other beats on both similarity (higher) and NLL (lower), best similarity first."""
        return pareto(self.seen, lambda t: self.seen[t].sim, lambda t: self.seen[t].nll)


def pareto(items: Iterable[T], sim: Callable[[T], float], nll: Callable[[T], float]) -> list[T]:
    """The items no other beats on both ``sim`` (higher) and ``nll`` (lower), best ``sim`` first."""
    out, best_nll = [], math.inf
    for item in sorted(items, key=lambda x: (-sim(x), nll(x))):
        if nll(item) < best_nll:
            out.append(item)
            best_nll = nll(item)
    return out


def _word_pieces(space: Any) -> dict[int, str]:
    """The encoder's pieces that are one whole word of letters each: what the gradient can propose.

    From the piece table (engine.models.vocab.piece_texts: no decode per id at SONAR's 256,206), then
    each word-starting piece of letters checked to tokenise back to itself alone.
    """
    from engine.models.vocab import piece_texts

    key = id(space)
    if key not in _pieces:
        words: dict[int, str] = {}
        for i, piece in enumerate(piece_texts(space.tokenizer)):
            text = piece.strip()
            if text.isalpha() and space.source_ids(text)[1:-1].tolist() == [i]:
                words[i] = text
        _pieces[key] = words
    return _pieces[key]


def _starts(space: Any, words: list[str]) -> list[int]:
    """The encoder piece where each word starts (the pieces of the words before it)."""
    return [len(space.source_ids(" ".join(words[:i]))) - 2 if i else 0 for i in range(len(words))]


def _gradient_words(batch: Batch, text: str, objective: Any, k: int) -> list[list[str]]:
    """Per word of ``text``, the ``k`` whole words the task gradient at its first piece ranks best."""
    import torch

    from engine.scoring.objectives import Weights
    from engine.scoring.terms import TEXT_TERMS

    space, scorer = batch.scorer.space, batch.scorer
    pieces = _word_pieces(space)
    ids = space.source_ids(text)
    vocab = space.token_table.shape[0]
    onehot = torch.nn.functional.one_hot(ids, vocab).float().unsqueeze(0).requires_grad_(True)
    with torch.enable_grad():
        z = space.encode_soft(onehot).float()
        loss = scorer.loss(scorer.predictions(z), Weights.of([objective], batch.device, without=TEXT_TERMS))
    grad = torch.autograd.grad(loss.sum(), onehot)[0][0, 1:-1]  # [L, V] of the content pieces
    candidates = torch.tensor(list(pieces), device=grad.device)
    words = text.split()
    out = []
    for start in _starts(space, words):
        scores = -grad[min(start, grad.shape[0] - 1), candidates]
        best = scores.topk(min(k, len(candidates))).indices.tolist()
        out.append([pieces[int(candidates[b])] for b in best])
    return out


def _edit(words: list[str], kind: str, at: int, new: str | None) -> str:
    """The sentence after one edit; a replaced word keeps the punctuation around its letters."""
    out = list(words)
    if kind == "delete":
        del out[at]
    elif kind == "insert":
        out.insert(at, new.capitalize() if at == 0 else new)
    else:
        old = out[at]
        lead = len(old) - len(old.lstrip("\"'(")) if old else 0
        core_end = lead + len(old[lead:].rstrip(".,!?;:\"')"))
        word = new.capitalize() if at == 0 else new
        out[at] = old[:lead] + word + old[core_end:]
    return " ".join(out)


def _proposals(batch: Batch, search: Search, member: Member, options: Any, objective: Any) -> list[str]:
    """``search_width`` new sentences from a member's: each a random edit, its word from the gradient or the LM."""
    words = member.text.split()
    rng = search.rng
    kinds = (
        ["replace"] + (["insert"] if options.insert else []) + (["delete"] if options.delete and len(words) > 1 else [])
    )
    sources = ["gradient", "lm"] + (["tail"] if options.resample else [])
    moves = []
    for n in range(options.search_width):
        source = sources[n % len(sources)]
        kind = "tail" if source == "tail" else rng.choice(kinds)
        at = rng.randrange(len(words) + (kind == "insert")) if words else 0
        moves.append((kind, at, source))
    gradient = _gradient_words(batch, member.text, objective, options.topk) if words else []
    prefixes = sorted({" ".join(words[:at]) for kind, at, source in moves if source == "lm" and kind != "delete"})
    fluency = batch.scorer.fluency
    fluent = dict(zip(prefixes, fluency.next_words(prefixes, options.topk))) if prefixes else {}
    tails = [" ".join(words[:at]) for kind, at, _ in moves if kind == "tail"]
    if tails:  # one call per member, its own generator: what a row samples depends on the row alone
        generator = _generator(fluency.device, rng.getrandbits(62))
        written = iter(fluency.continue_texts(tails, generator, options.topk, 2 * len(words) + 8))
    out = []
    for kind, at, source in moves:
        new = None
        if kind == "tail":
            text = next(written)
            if text and text not in search.seen and text not in out:
                out.append(text)
            continue
        if kind != "delete":
            pool = fluent.get(" ".join(words[:at]), []) if source == "lm" else gradient[min(at, len(gradient) - 1)]
            if not pool:
                continue
            new = rng.choice(pool)
        text = _edit(words, kind, at, new)
        if text.strip() and text not in search.seen and text not in out:
            out.append(text)
    return out


def _generator(device: Any, seed: int) -> Any:
    import torch

    return torch.Generator(device=device).manual_seed(seed)


def _score(batch: Batch, texts: list[str], objectives: list[Any]) -> list[Scored]:
    """Each text in z's place: its similarity and its objective's task terms, and its fluency."""
    from engine.scoring.objectives import Weights
    from engine.scoring.terms import TEXT_TERMS

    scorer = batch.scorer
    weights = Weights.of(objectives, batch.device, without=TEXT_TERMS)
    sims, task = scorer.score_texts(texts, weights)
    nll, repetition = scorer.fluency.nll(texts), scorer.fluency.repetition(texts)
    return [Scored(*values) for values in zip(sims.tolist(), task.tolist(), nll, repetition)]


def run(batch: Batch) -> None:
    from engine.events import DONE, RUNNING, Step
    from engine.methods.batch import poll_rows, start, start_texts, stop_early

    rows, experiments = batch.rows, [r.experiment for r in batch.rows]
    starts = start_texts(batch)
    start(batch, texts=starts)
    searches: list[Search] = []
    for row, text in zip(rows, starts):
        e, weights = row.experiment, dict(row.experiment.objective.weights)
        members = [Member(w, text) for w in weights_of(e.options)]
        searches.append(
            Search(members, random.Random(e.seed), weights.get("fluency", 0.0), weights.get("repetition", 0.0))
        )
    first = _score(batch, starts, [e.objective for e in experiments])
    for row, search, text, scored in zip(rows, searches, starts, first):
        search.seen[text] = scored
        for member in search.members:
            member.value = search.member_value(member, scored)
        row.trajectory.append(scored.sim)

    active = list(range(len(rows)))
    loop_start = time.perf_counter()
    k = 0
    while active:
        if k > 0:
            active = poll_rows(batch, active, lambda which, status: _end(batch, which, searches, status))
            if not active:
                return
        k += 1
        # Each row's candidates are its own (a text two rows propose is scored for each): what a row finds must
        # not depend on what shares its batch.
        texts, owners, by_member = [], [], []
        for i in active:
            mine: set[str] = set()
            for member in searches[i].members:
                proposed = _proposals(batch, searches[i], member, experiments[i].options, experiments[i].objective)
                new = [t for t in proposed if t not in mine]
                mine.update(new)
                texts += new
                owners += [i] * len(new)
                by_member.append((i, member, proposed))
        scores = _score(batch, texts, [experiments[i].objective for i in owners]) if texts else []
        for i, text, scored in zip(owners, texts, scores):
            searches[i].seen[text] = scored
        for i, member, proposed in by_member:
            search = searches[i]
            for text in proposed:
                value = search.member_value(member, search.seen[text])
                if value < member.value:
                    member.text, member.value = text, value
        rate = batch.rate(k, loop_start)
        showing: list[int] = []
        for i in active:
            search, options = searches[i], experiments[i].options
            if options.restart_every and k % options.restart_every == 0 and len(search.members) > 1:
                _restart(search)
            best = search.seen[search.choice()]
            rows[i].record(best.sim, search.choice_value(best))
            rows[i].search_trace.append([len(search.seen) + rows[i].bank_scored, best.sim])
            batch.emit(
                Step(experiments[i].name, k, rows[i].steps, best.sim, (best.sim,), search.choice_value(best), 0.0, rate)
            )
            if options.stop_on_exact or k % experiments[i].decode_every == 0 or k >= rows[i].steps:
                showing.append(i)
        chosen = [searches[i].choice() for i in showing]
        sims = [searches[i].seen[text].sim for i, text in zip(showing, chosen)]
        exact = dict(zip(showing, _show(batch, showing, chosen, sims, k)))
        ending = [
            i
            for i in active
            if k >= rows[i].steps
            or stop_early(experiments[i].options, searches[i].seen[searches[i].choice()].sim, exact.get(i))
        ]
        _end(batch, ending, searches, DONE)
        active = [i for i in active if rows[i].status == RUNNING]


def _restart(search: Search) -> None:
    """The member furthest behind (its own value, against the best of the others') restarts from the front."""
    worst = max(search.members, key=lambda m: m.value - min(search.member_value(m, s) for s in search.seen.values()))
    worst.text = search.rng.choice(search.front())
    worst.value = search.member_value(worst, search.seen[worst.text])


def _show(batch: Batch, which: list[int], texts: list[str], sims: list[float], k: int) -> list[list[bool]]:
    """Announce rows ``which``'s chosen sentences (their ``sims``), one decoder call for them all; whether each
    prediction made from each decodes exactly to its target, row by row."""
    from engine.methods.batch import show_best

    if not which:
        return []
    return show_best(batch, which, texts, batch.scorer.encode(texts), sims, k)


def _rescored(batch: Batch, texts: list[str]) -> tuple[Tensor, list[float], list[float]]:
    """Each text from scratch: its embedding [N, D], its similarity in z's place and its NLL (an encoder or
    fluency-model call gives a text the same numbers whatever it is scored with)."""
    scorer = batch.scorer
    vectors = scorer.encode(texts)
    return vectors, scorer.score(vectors)[0].tolist(), scorer.fluency.nll(texts, fresh=True)


def _end(batch: Batch, which: list[int], searches: list[Search], status: str) -> None:
    from engine.methods.batch import BestText, settle

    if not which:
        return
    best, vectors = [], []
    for i in which:
        search = searches[i]
        chosen = search.choice()
        front = search.front()
        if len(front) > FRONT_KEPT:
            front = [front[round(n * (len(front) - 1) / (FRONT_KEPT - 1))] for n in range(FRONT_KEPT)]
        texts = list(dict.fromkeys([chosen, *front]))  # the choice first
        encoded, sims, nll = _rescored(batch, texts)
        tracker = BestText()
        tracker.add(chosen, sims[0])
        best.append(tracker)
        vectors.append(encoded[0])
        row = batch.rows[i]
        # the front again after its rescoring, whose last bits may differ from the scores it was chosen by
        again = {t: {"text": t, "sim": s, "nll": n} for t, s, n in zip(texts, sims, nll)}
        row.front = pareto([again[t] for t in front], itemgetter("sim"), itemgetter("nll"))
        top = sorted(search.seen, key=lambda t: search.choice_value(search.seen[t]))[:TOP_SHOWN]
        row.top = [
            {
                "text": t,
                "sim": search.seen[t].sim,
                "loss": search.choice_value(search.seen[t]),
                "nll": search.seen[t].nll,
            }
            for t in top
        ]
    settle(batch, which, best)
    for i, tracker, vector in zip(which, best, vectors):
        row = batch.rows[i]
        row.scored = len(searches[i].seen) + row.bank_scored
        row.roundtrip_sim = tracker.sim
        batch.finish(i, status, vector)


METHOD = Method(
    "fluent_swap",
    "word edits proposed by the task gradient and a language model: fluent new sentences, and the front",
    FluentSwapOptions,
    run,
    check,
    uses=frozenset({"init", "steps", "decode_every", "beam_size", "seed"}),
    needs_fluency=True,
)
