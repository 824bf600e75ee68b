"""Optimisation methods, one module each, behind one interface: ``run(batch: Batch) -> None``.

``gradient`` (projected gradient descent on z, with snapping, nearest projection
and the cycle term as options), ``bank_search`` (score every bank sentence) and
``bank_swap`` (gradient-ranked swaps between bank sentences). Their options are
declared in :mod:`engine.methods.options` (torch-free, for ``--check``); the
shared pieces (the batch, the honest score) in :mod:`engine.methods.base`.
This package's import stays light: :mod:`engine.spec` reads the options.
"""

import importlib
from typing import Any, Callable


def method_runner(name: str) -> Callable[[Any], None]:
    """The ``run`` function of method ``name`` (imported on first use: methods import torch)."""
    return importlib.import_module(f"engine.methods.{name}").run
