"""The cells of the comparison report's table: each metric's mean ± standard error rounded
to the s.e.'s first significant digit (:func:`pipeline.compare.carryover.num`), the best
mean of each column in bold by the metric's direction. Plain data in, strings out."""

from __future__ import annotations

import math

from pipeline.compare.carryover import num
from pipeline.compare.results import VariantResult


def best_rows(results: list[VariantResult], metric: str, direction: str) -> set[str]:
    """The names of the rows whose mean of ``metric`` is the best (ties: all of them)."""
    means = {r.name: r.stats[metric][0] for r in results if metric in r.stats}
    means = {k: v for k, v in means.items() if math.isfinite(v)}
    if not means:
        return set()
    best = max(means.values()) if direction == "maximize" else min(means.values())
    return {k for k, v in means.items() if v == best}


def metric_cells(results: list[VariantResult], metrics: list[str]) -> dict[str, list[str]]:
    """Row name → one cell per metric, the best of each column in bold (a metric's
    direction: from any row that knows it; unknown means minimize)."""
    directions: dict[str, str] = {}
    for r in results:
        directions |= {m: d for m, d in r.directions.items() if m not in directions}
    best = {m: best_rows(results, m, directions.get(m, "minimize")) for m in metrics}
    cells: dict[str, list[str]] = {}
    for r in results:
        row = []
        for m in metrics:
            stat = r.stats.get(m)
            text = "—" if stat is None else num(*stat)
            row.append(f"**{text}**" if stat is not None and r.name in best[m] else text)
        cells[r.name] = row
    return cells
