"""Each method's options: a frozen dataclass per method, read by ``engine.spec``.

Plain Python (no torch), so ``--check`` validates them at start-up. A field's
type and its metadata (``minimum``, ``help``) are all the validation there is:
``engine.spec`` checks every option generically and names the key on error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

GRADIENT = "gradient"
BANK_SEARCH = "bank_search"
BANK_SWAP = "bank_swap"
TOKEN_SWAP = "token_swap"
INIT_FROM_BANK = "bank"  # token_swap's init = "bank": start from the bank's best sentence for the story


def option(default: Any, help: str, minimum: float | None = None, maximum: float | None = None) -> Any:
    return field(default=default, metadata={"help": help, "minimum": minimum, "maximum": maximum})


@dataclass(frozen=True)
class Stopping:
    """Early stop, an option of every method."""

    stop_at: float = option(0.0, "stop once the honest score (text_sim) reaches this; 0: never", 0.0, 1.0)
    stop_on_exact: bool = option(False, "stop once every prediction decodes exactly to its target")


@dataclass(frozen=True)
class GradientOptions(Stopping):
    snap_every: int = option(0, "every N steps z is replaced by E(D(z)), the embedding of its own decoded text; 0: never", 0)
    nearest: bool = option(False, "the forward pass uses the bank sentence nearest to z; the gradient updates z (needs bank)")


@dataclass(frozen=True)
class BankSearchOptions(Stopping):
    top_k: int = option(10, "how many of the best bank sentences to report", 1)


@dataclass(frozen=True)
class BankSwapOptions(Stopping):
    search_width: int = option(64, "bank sentences scored exactly per step (the best by the gradient's estimate)", 1)
    buffer_size: int = option(4, "best points kept; each step searches from the best of them", 1)
    top_k: int = option(10, "how many of the best sentences seen to report", 1)


@dataclass(frozen=True)
class TokenSwapOptions(Stopping):
    search_width: int = option(64, "candidate sentences scored exactly per step", 1)
    n_replace: int = option(1, "tokens replaced in each candidate", 1)
    topk: int = option(32, "replacement tokens per position, the best by the gradient", 1)
    buffer_size: int = option(4, "best sentences kept; each step edits the best of them", 1)


METHOD_OPTIONS: dict[str, type] = {
    GRADIENT: GradientOptions, BANK_SEARCH: BankSearchOptions, BANK_SWAP: BankSwapOptions, TOKEN_SWAP: TokenSwapOptions,
}  # fmt: skip
METHODS = tuple(METHOD_OPTIONS)
BANK_METHODS = (BANK_SEARCH, BANK_SWAP)  # methods that only ever look at bank sentences


def option_fields(method: str) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(METHOD_OPTIONS[method])}


def all_option_keys() -> tuple[str, ...]:
    """Every option of every method, in declaration order, once."""
    return tuple(dict.fromkeys(name for method in METHODS for name in option_fields(method)))


def methods_with(key: str) -> list[str]:
    return [m for m in METHODS if key in option_fields(m)]


def options_dict(options: Any) -> dict[str, Any]:
    return dataclasses.asdict(options)
