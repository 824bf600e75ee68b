"""What a method is: one declaration (its name, options, config rules and run) and the command it gets between steps.

A method is one module of this package that ends with ``METHOD = Method(...)``,
plus one line in ``engine/methods/__init__.py``. The config parser reads every
declaration at start-up (``--check``, the dashboard's first frame), so a
method module imports torch and the scoring code inside its functions, never at
its top: torch's import alone takes 1.6 s. This module is plain Python.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Command:
    """What the running rows of a batch must do after this step: stop (they end interrupted) or skip some."""

    stop: bool = False
    skip: frozenset[str] = frozenset()  # running experiments to end as skipped

    def __bool__(self) -> bool:
        return self.stop or bool(self.skip)


GO_ON = Command()
STOP = Command(stop=True)

# Maxima of the options several methods share (docs/configuration.md, "Limits"): one step scores
# search_width sentences exactly (4,096 take seconds on a CPU), a buffer is sorted every step, a top list is saved.
SEARCH_WIDTH = 4096
BUFFER_SIZE = 1024
TOP_K = 1000


def option(default: Any, help: str, minimum: float | None = None, maximum: float | None = None) -> Any:
    """A method option: its type (the annotation), default, help text and bounds are all its validation."""
    return field(default=default, metadata={"help": help, "minimum": minimum, "maximum": maximum})


@dataclass(frozen=True)
class Stopping:
    """Early stop, an option of every method (each method's options extend this)."""

    stop_at: float = option(0.0, "stop once the honest score (text_sim) reaches this; 0: never", 0.0, 1.0)
    stop_on_exact: bool = option(False, "stop once every prediction decodes exactly to its target")


class Invalid(Exception):
    """An experiment breaks a method's config rule: ``key`` is the setting to point at (None: the experiment)."""

    def __init__(self, key: str | None, message: str) -> None:
        super().__init__(message)
        self.key, self.message = key, message


BANK_NEEDED = '{} needs a sentence bank: set bank = "corpus" or the path of a text file'


def require_bank(experiment: Any, needs: str) -> None:
    if experiment.bank is None:
        raise Invalid(None, BANK_NEEDED.format(needs))


INIT_FROM_BANK = "bank"  # init = "bank": start from the bank's best sentence for the story (the text searches)


def bank_init(experiment: Any) -> bool:
    """Whether ``experiment`` starts from the bank's best sentence; ``init = "bank"`` without a bank is refused."""
    if experiment.init != INIT_FROM_BANK:
        return False
    if experiment.bank is None:
        raise Invalid("init", 'init = "bank" starts from the bank\'s best sentence: set bank too')
    return True


def refuse_cycle(experiment: Any) -> None:
    """The cycle term decodes z; only the gradient method has a z between real sentences."""
    if "cycle" in dict(experiment.objective.weights):
        raise Invalid("objective", f"the cycle term applies to method gradient, not {experiment.method}")


# The experiment settings a method may or may not read; one it does not read shows as blank in every table.
SETTINGS = frozenset(("init", "lr", "steps", "optimizer", "norm", "decode_every", "beam_size", "seed"))


def refuse_text_terms(experiment: Any) -> None:
    """The fluency and repetition terms score a text; z has no text to take a gradient through."""
    used = [term for term in ("fluency", "repetition") if term in dict(experiment.objective.weights)]
    if used:
        terms = f"the {' and '.join(used)} term{'s score' if len(used) > 1 else ' scores'}"
        raise Invalid(
            "objective",
            f"{terms} a text, which method gradient does not search (another model's tokens give z no"
            " gradient): use token_swap, fluent_swap, bank_search or bank_swap",
        )


@dataclass(frozen=True)
class Method:
    """A method as the config and the engine see it."""

    name: str
    summary: str  # one line: what it searches (help text and docs)
    options: type  # a frozen dataclass extending Stopping, every field made by option()
    run: Callable[[Any], None]  # run(batch: engine.methods.batch.Batch): every row of the batch to its end
    check: Callable[[Any], None] = lambda experiment: None  # raises Invalid when an experiment breaks a rule
    uses: frozenset[str] = SETTINGS  # the settings it reads ("init": it starts from init, so init_sim means something)
    needs_fluency: bool = False  # it reads texts through the backend's fluency model

    def option_fields(self) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(self.options)}
