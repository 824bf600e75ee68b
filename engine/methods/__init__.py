"""The methods: one module each, declared once (``METHOD``: options, config rules, run), listed here.

``gradient`` (projected gradient descent on z, with snapping, nearest
projection and the cycle term as options), ``bank_search`` (score every bank
sentence), ``bank_swap`` (gradient-ranked swaps between bank sentences),
``token_swap`` (GCG over the encoder's input tokens) and ``fluent_swap``
(word edits from the gradient and a language model, with the front of
similarity against fluency). A new method is a module
ending in ``METHOD = Method(...)`` (:mod:`engine.methods.method`) and its line
below. What methods share: :mod:`~engine.methods.batch` (the batch, the honest
score) and :mod:`~engine.methods.top` (the end of a bank method's row).
This package's import is light (no torch): the config parser reads it.
"""

from __future__ import annotations

import dataclasses

from engine.methods import bank_search, bank_swap, fluent_swap, gradient, token_swap
from engine.methods.method import Method

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        gradient.METHOD,
        bank_search.METHOD,
        bank_swap.METHOD,
        token_swap.METHOD,
        fluent_swap.METHOD,
    )
}


def option_keys() -> tuple[str, ...]:
    """Every option of every method, in declaration order, once."""
    return tuple(dict.fromkeys(name for m in METHODS.values() for name in m.option_fields()))


def methods_with(key: str) -> list[str]:
    """The methods that have option ``key``."""
    return [name for name, m in METHODS.items() if key in m.option_fields()]


def option_field(key: str) -> dataclasses.Field:
    """The declaration (type, default, help, bounds) of option ``key`` (the first method's that has it)."""
    return METHODS[methods_with(key)[0]].option_fields()[key]
