"""Text plots of saved results (plotext), for ``embopt-tui report --plot`` and the docs.

The dashboard draws the same curves live (widgets/plot.py); this one reads
``results.json`` rows, so it works on any finished run, headless.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

MARKERS = ("o", "x", "+", "*", "#", "@", "%", "=")  # one character each: the curves stay apart without colour


def scorings_plot(rows: Iterable[Mapping[str, Any]], *, width: int = 100, height: int = 24, title: str = "") -> str:
    """Honest score (best text_sim so far) against exact scorings spent, one curve per experiment with a trace
    (the discrete methods), and a line at each story's oracle; "" when no row has a trace."""
    import plotext as plt

    traced = [r for r in rows if r.get("search_trace")]
    if not traced:
        return ""
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    for n, row in enumerate(traced):
        trace = row["search_trace"]
        # a search from the init text starts there (1 scoring); bank search and init = "bank" start after a whole bank
        from_init = row.get("method") != "bank_search" and row.get("init_text") != "bank"
        start = [[1, row["init_sim"]]] if from_init and row.get("init_sim") is not None and trace[0][0] > 1 else []
        points = start + [list(p) for p in trace]
        plt.plot(
            [p[0] for p in points], [p[1] for p in points], label=str(row.get("name")), marker=MARKERS[n % len(MARKERS)]
        )
    for oracle in sorted({round(float(r["oracle_sim"]), 3) for r in traced if r.get("oracle_sim") is not None}):
        plt.hline(oracle)
    plt.xscale("log")
    plt.xlabel("exact scorings spent (log)")
    plt.ylabel("honest score")
    plt.title(title or "Honest score per scorings spent (horizontal lines: the oracle)")
    return re.sub(r"\x1b\[[0-9;]*m", "", plt.build())  # plain text: no terminal colour codes


def front_plot(rows: Iterable[Mapping[str, Any]], *, width: int = 100, height: int = 24, title: str = "") -> str:
    """Each row's front (fluent_swap): similarity against NLL per token, one marker per experiment, and each story's
    true sentence (the oracle) as O with a line at its similarity; "" when no row has a front."""
    import plotext as plt

    fronted = [r for r in rows if r.get("front")]
    if not fronted:
        return ""
    plt.clear_figure()
    plt.plotsize(width, height)
    plt.theme("clear")
    for n, row in enumerate(fronted):
        front = row["front"]
        nll, sim = [p["nll"] for p in front], [p["sim"] for p in front]
        plt.scatter(nll, sim, label=str(row.get("name")), marker=MARKERS[n % len(MARKERS)])
    oracles = {(float(r["oracle_nll"]), float(r["oracle_sim"])) for r in fronted if r.get("oracle_nll") is not None}
    for nll, sim in sorted(oracles):
        plt.scatter([nll], [sim], marker="O", label="the true sentence (oracle)")
        plt.hline(sim)
    plt.xlabel("NLL per token (lower reads better)")
    plt.ylabel("similarity in z's place")
    plt.title(title or "Front: similarity against fluency")
    return re.sub(r"\x1b\[[0-9;]*m", "", plt.build())
