"""The fluency model: any Hugging Face causal language model, and how fluent it finds a text.

A text's fluency is its mean negative log-likelihood per token under the model,
tokenised by the model's own tokenizer: the text's tokens and an end-of-text
token, each predicted from the beginning-of-text token and what precedes it
(nats per token; lower reads better). The model is named by a hub id
(``owner/name[@revision]``, fetched into the Hugging Face cache as predictors
are) or a directory; the embedded default ships one (``engine/mini/lm.py``).
This module's import is light: the parser checks directories with it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.models.hub import Layout
from engine.models.predictor_dir import CONFIG_FILE, WEIGHT_FILES

TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "tokenizer.model")
LM_FILES = (
    CONFIG_FILE,
    "generation_config.json",
    *WEIGHT_FILES,
    *TOKENIZER_FILES,
    "merges.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
)


class FluencyError(Exception):
    """The fluency model cannot be had (a hub id neither cached nor downloadable, a folder that is not one)."""


WORD = re.compile(r"[A-Za-z]+")
BATCH = 64  # new texts scored per pass of nll (each pass grouped by token length, ROWS a call)
ROWS = 8  # texts per model call: every call has this shape, whatever shares it


def lm_dir_problem(directory: Path) -> str | None:
    """Why ``directory`` is not a causal LM's folder as Hugging Face saves one (None: it is); no torch."""
    if not directory.is_dir():
        return "does not exist" if not directory.exists() else "is not a directory"
    if not (directory / CONFIG_FILE).is_file():
        return f"no {CONFIG_FILE} (not a Hugging Face model directory)"
    if not any((directory / name).is_file() for name in WEIGHT_FILES):
        return f"no weights ({' or '.join(WEIGHT_FILES)})"
    if not any((directory / name).is_file() for name in TOKENIZER_FILES):
        return f"no tokenizer ({', '.join(TOKENIZER_FILES)})"
    return None


LM_LAYOUT = Layout("language model", LM_FILES, lm_dir_problem)  # what a hub id's snapshot must hold


def repetition_penalty(tokens: Sequence[int]) -> float:
    """FLRT's: the sum over repeated tokens of (count - 1) ** 1.5, over the length; 0 for no repeat."""
    counts: dict[int, int] = {}
    for token in tokens:
        counts[token] = counts.get(token, 0) + 1
    return sum((c - 1) ** 1.5 for c in counts.values() if c > 1) / max(1, len(tokens))


@dataclass
class FluencyModel:
    """A causal LM with its tokenizer, on one device; scores are cached by text."""

    model: Any  # transformers PreTrainedModel (causal LM), eval mode, frozen
    tokenizer: Any
    name: str  # as the config named it (a hub id or a directory)
    directory: str  # the folder loaded (for a hub id: its cache snapshot)
    _nll: dict[str, float] = field(default_factory=dict, repr=False)
    _words: Any = field(default=None, repr=False)

    @property
    def device(self) -> Any:
        return next(self.model.parameters()).device

    def tokens(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def _ends(self) -> tuple[int | None, int | None]:
        tok = self.tokenizer
        bos = tok.bos_token_id if tok.bos_token_id is not None else tok.eos_token_id
        return bos, tok.eos_token_id

    def forget(self) -> None:
        """Drop the NLLs computed so far (every batch starts with none: what a ``--resume`` starts from too)."""
        self._nll.clear()

    def nll(self, texts: Sequence[str], fresh: bool = False) -> list[float]:
        """Mean NLL per token of each text (its tokens and the end of text), batched; each computed once
        (``fresh``: computed again, in a pass of these texts alone)."""
        if fresh:
            return self._score(list(texts)) if texts else []
        new = [t for t in dict.fromkeys(texts) if t not in self._nll]
        for start in range(0, len(new), BATCH):
            chunk = new[start : start + BATCH]
            self._nll.update(zip(chunk, self._score(chunk)))
        return [self._nll[t] for t in texts]

    def _score(self, texts: Sequence[str]) -> list[float]:
        return [sum(t) / max(1, len(t)) for t in self.token_nll(texts)]

    def token_nll(self, texts: Sequence[str]) -> list[list[float]]:
        """Each text's NLL of each of its tokens and of its end (what ``nll`` averages).

        Texts go through the model grouped by token length, ``ROWS`` a call
        (the last call filled with copies): no text is padded and every call
        has the shape of the text's own length, so a text's NLL is the same
        whatever else is scored with it, and a row's search does not depend
        on what shares its batch (as ``engine.scoring.scorer.encode_rowwise``
        does for the encoder).
        """
        import torch

        bos, eos = self._ends()
        rows = [([bos] if bos is not None else []) + self.tokens(t) + ([eos] if eos is not None else []) for t in texts]
        by_length: dict[int, list[int]] = {}
        for i, row in enumerate(rows):
            by_length.setdefault(len(row), []).append(i)
        out: list[list[float]] = [[] for _ in rows]
        with torch.inference_mode():
            for length, group in by_length.items():
                if length < 2:
                    continue  # nothing to predict
                for start in range(0, len(group), ROWS):
                    part = group[start : start + ROWS]
                    call = [rows[i] for i in part] + [rows[part[0]]] * (ROWS - len(part))
                    ids = torch.tensor(call, device=self.device)
                    logits = self.model(input_ids=ids).logits.float()
                    logp = torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
                    for j, i in enumerate(part):
                        out[i] = (-logp[j]).tolist()
        return out

    def repetition(self, texts: Sequence[str]) -> list[float]:
        return [repetition_penalty(self.tokens(t)) for t in texts]

    def word_tokens(self) -> Any:
        """[V] bool: the tokens that are a whole word (letters only) starting a word: what can be proposed."""
        if self._words is None:
            import torch

            tok = self.tokenizer
            pieces = tok.convert_ids_to_tokens(list(range(len(tok))))
            word_level = type(tok.backend_tokenizer.model).__name__ == "WordLevel" if tok.is_fast else False
            starts = ("Ġ", "▁", " ")
            flags = []
            for piece in pieces:
                text = (piece or "").lstrip("".join(starts))
                flags.append(bool(WORD.fullmatch(text)) and (word_level or (piece or "").startswith(starts)))
            self._words = torch.tensor(flags, device=self.device)
        return self._words

    def continue_texts(self, prefixes: Sequence[str], generator: Any, k: int, max_new: int) -> list[str | None]:
        """Each prefix (a text, "" for none) continued by sampling the model (its ``k`` likeliest tokens at each
        place, drawn with ``generator``) to its end-of-text token: whole sentences the model itself writes.
        None where no end came within ``max_new`` tokens, or the text does not tokenise back the same."""
        import torch

        bos, eos = self._ends()
        tok = self.tokenizer
        rows = [([bos] if bos is not None else []) + (self.tokens(p) if p else []) for p in prefixes]
        start = [len(r) for r in rows]
        done = [False] * len(rows)
        banned = torch.zeros(len(tok), dtype=torch.bool, device=self.device)
        banned[[i for i in tok.all_special_ids if i != eos and i < len(tok)]] = True
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        config = self.model.config
        room = getattr(config, "n_positions", None) or getattr(config, "max_position_embeddings", None) or 1024
        for _ in range(max_new):
            live = [i for i, d in enumerate(done) if not d and len(rows[i]) < room]
            if not live:
                break
            width = max(len(rows[i]) for i in live)
            ids = torch.tensor([rows[i] + [pad] * (width - len(rows[i])) for i in live], device=self.device)
            mask = torch.tensor([[1] * len(rows[i]) + [0] * (width - len(rows[i])) for i in live], device=self.device)
            with torch.inference_mode():
                logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
            last = logits[torch.arange(len(live)), torch.tensor([len(rows[i]) - 1 for i in live])]
            last = last[:, : len(tok)].masked_fill(banned, -torch.inf)
            top = last.topk(min(k, last.shape[-1]), dim=-1)
            pick = torch.multinomial(torch.softmax(top.values, dim=-1), 1, generator=generator).squeeze(-1)
            for i, token in zip(live, top.indices.gather(-1, pick.unsqueeze(-1)).squeeze(-1).tolist()):
                if token == eos:
                    done[i] = True
                else:
                    rows[i].append(token)
        out: list[str | None] = []
        for row, begin, finished in zip(rows, start, done):
            content = row[1:] if bos is not None else row
            text = tok.decode(content, skip_special_tokens=True, clean_up_tokenization_spaces=True).strip()
            out.append(text if finished and len(row) > begin and text and self.tokens(text) == content else None)
        return out

    def next_words(self, prefixes: Sequence[str], k: int) -> list[list[str]]:
        """For each prefix (a text, "" for the start), the ``k`` words the model finds likeliest next."""
        import torch

        bos, _ = self._ends()
        rows = [([bos] if bos is not None else []) + (self.tokens(p) if p else []) for p in prefixes]
        width = max(len(r) for r in rows)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows], device=self.device)
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows], device=self.device)
        with torch.inference_mode():
            logits = self.model(input_ids=ids, attention_mask=mask).logits.float()
        last = logits[torch.arange(len(rows)), torch.tensor([len(r) - 1 for r in rows])]
        last = last.masked_fill(~self.word_tokens(), -torch.inf)
        top = last.topk(min(k, int(self.word_tokens().sum())), dim=-1).indices.tolist()
        words = self.tokenizer.convert_ids_to_tokens
        return [[words(i).lstrip("Ġ▁ ") for i in row] for row in top]


def load_fluency(directory: str | Path, name: str, device: Any, dtype: Any) -> FluencyModel:
    """The causal LM in ``directory`` (a folder, or a hub id's snapshot), frozen, in eval mode."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    problem = lm_dir_problem(Path(directory))
    if problem:
        raise FluencyError(f"backend.fluency: {name}: {directory} {problem}")
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(directory))
        model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=dtype).to(device).eval()
    except (OSError, ValueError, KeyError) as err:  # transformers' word for an unreadable or foreign folder
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise FluencyError(
            f"backend.fluency: {name}: not a causal language model transformers can load: {first}"
        ) from None
    model.requires_grad_(False)
    return FluencyModel(model, tokenizer, name, str(directory))
