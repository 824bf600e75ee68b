"""The bounds of a config: past them a typo (an extra zero, a pasted id) or a hostile file would run for days,
fill memory or never return, so ``--check`` refuses them in one line.

Each number is far above what a study needs and below what this kind of
machine can do in reasonable time and memory (docs/configuration.md, "Limits",
says why each one is what it is). Method options carry their own maxima in
their declarations (``engine.methods``); the predictor's size is checked
against this machine's memory by ``engine.models.predictor_dir``.
"""

from __future__ import annotations

import os

CONFIG_BYTES = 8 << 20  # a config file; 10,000 experiments of a few lines each take ~2 MiB
NESTING = 16  # arrays and inline tables inside each other; a config needs 3
EXPERIMENTS = 10_000  # a queue; each experiment's rows and events stay O(1), so this is hours, not days
STORIES = 1_000
SENTENCES = 256  # a story's sentences plus its context: all of them are encoded in one call
TEXT_CHARS = 4_096  # one sentence, init text or context sentence (the encoder reads 512 tokens at most)
STEPS = 1_000_000
DECODE_EVERY = 1_000_000
BEAM_SIZE = 64
SEED = 2**63 - 1
REPEAT = 1_000  # repeats of one experiment (seeds); each is a row of the queue
MAX_ATTEMPTS = 100  # ray: runs of one batch
GPUS_PER_WORKER = 64.0
CLUSTER_WORKERS = 1_024  # ray: workers on a cluster this run joins (it may be larger than this machine)


def cpu_cores() -> int:
    """The cores this process may run on (its affinity mask), which bounds local workers and threads."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def local_workers() -> int:
    """Ray workers on a private cluster of this machine: one per core at most (each loads the models)."""
    return cpu_cores()


def nesting(text: str) -> tuple[int, int]:
    """(deepest nesting of arrays and inline tables, the line where it is first reached) in TOML ``text``.

    A scan, not a parse: strings and comments are skipped, ``[`` ``{`` open,
    ``]`` ``}`` close (``[[experiments]]`` is 2 deep for a moment). It exists
    because tomllib recurses once per level and a file nested ~500 deep raises
    RecursionError wherever it is parsed (the dashboard's live reload included).
    """
    depth = deepest = 0
    line = at = 1
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "\n":
            line += 1
        elif c == "#":
            end = text.find("\n", i)
            i = n if end < 0 else end
            continue
        elif c in "\"'":
            quote = c * 3 if text.startswith(c * 3, i) else c
            i += len(quote)
            while i < n and not text.startswith(quote, i):
                if text[i] == "\\" and c == '"':
                    i += 1  # the escaped character cannot end the string
                if i < n and text[i] == "\n":
                    line += 1
                i += 1
            i += len(quote)
            continue
        elif c in "[{":
            depth += 1
            if depth > deepest:
                deepest, at = depth, line
        elif c in "]}":
            depth = max(0, depth - 1)
        i += 1
    return deepest, at
