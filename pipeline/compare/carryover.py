"""Carry-over: does a tuned setting hold on new seeds? The comparison report's first table.

For each variant (``pipeline compare`` with ``defaults: true``):

- how optimistic the pick was: the picked trial's objective on its trial seeds (the value
  the study ranked it by; the mean over ``tune.seeds`` seeds) beside its mean ± standard
  error on the new seeds;
- tuned against default on the same new seeds, per metric: the paired difference
  (tuned − default, mean ± s.e. over the seeds both have) and on how many of those seeds
  the tuned setting was better by the metric's own direction.

Lucic et al. 2018 re-run each model's best setting on new seeds because the best of many
trials is optimistic (the winner's curse); Kurach et al. 2019 report paired comparisons
over seeds. Plain data in, plain data out: the report hands its rows here.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SeedMetrics:
    """One variant's seed re-trainings of one setting: seed → final metrics."""

    by_seed: dict[int, dict[str, float]]


@dataclass
class Paired:
    """tuned − default over the seeds both have, and how often tuned was better."""

    mean: float
    se: float
    better: int
    seeds: int


@dataclass
class CarryOver:
    variant: str
    objective: str
    direction: str
    #: the picked trial's objective on its trial seeds (None: no completed trial)
    trial_value: float | None
    #: mean ± s.e. of the picked setting's objective on the new seeds
    new_value: tuple[float, float] | None
    #: metric (and the objective, under its label) → paired tuned − default
    paired: dict[str, Paired] = field(default_factory=dict)

    @property
    def beat_default(self) -> bool | None:
        """Whether tuning beat the default on the new seeds by the objective's paired mean."""
        p = self.paired.get(self.objective)
        if p is None or math.isnan(p.mean):
            return None
        return p.mean < 0 if self.direction == "minimize" else p.mean > 0


def objective_of(metrics: dict[str, float], weights: dict[str, float]) -> float | None:
    if any(name not in metrics for name in weights):
        return None
    return sum(w * metrics[name] for name, w in weights.items())


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (NaN s.e. for one value)."""
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return mean, se


def paired(
    tuned: SeedMetrics, default: SeedMetrics, metric: str, maximize: bool, weights=None
) -> Paired | None:
    """tuned − default of ``metric`` (or of the objective ``weights``) on the common seeds."""

    def value(m: dict[str, float]) -> float | None:
        return objective_of(m, weights) if weights is not None else m.get(metric)

    diffs = []
    for seed in sorted(set(tuned.by_seed) & set(default.by_seed)):
        a, b = value(tuned.by_seed[seed]), value(default.by_seed[seed])
        if a is not None and b is not None:
            diffs.append(a - b)
    if not diffs:
        return None
    mean, se = mean_se(diffs)
    better = sum(1 for d in diffs if (d > 0 if maximize else d < 0))
    return Paired(mean, se, better, len(diffs))


def carry_over(
    variant: str,
    objective: str,
    direction: str,
    weights: dict[str, float],
    trial_value: float | None,
    tuned: SeedMetrics,
    default: SeedMetrics | None,
    directions: dict[str, str],
    metrics: list[str],
) -> CarryOver:
    """One variant's carry-over (``directions``: each metric's ``minimize``/``maximize``)."""
    values = [v for m in tuned.by_seed.values() if (v := objective_of(m, weights)) is not None]
    item = CarryOver(
        variant, objective, direction, trial_value, mean_se(values) if values else None
    )
    if default is not None:
        p = paired(tuned, default, objective, direction == "maximize", weights)
        if p is not None:
            item.paired[objective] = p
        for metric in metrics:
            p = paired(tuned, default, metric, directions.get(metric) == "maximize")
            if p is not None:
                item.paired[metric] = p
    return item


def num(value: float, se: float | None = None) -> str:
    """A value rounded to its s.e.'s first significant digit (4 significant digits without)."""
    if se is None or not math.isfinite(se) or se == 0:
        return f"{value:.4g}"
    digits = max(0, -math.floor(math.log10(abs(se))))
    return f"{value:.{digits}f} ± {se:.{digits}f}"


def markdown_lines(items: list[CarryOver], metrics: list[str]) -> list[str]:
    """The summary line, then a table: the pick's optimism and tuned − default per metric."""
    judged = [i for i in items if i.beat_default is not None]
    beat = [i.variant for i in judged if i.beat_default]
    lines = [
        f"**Tuning beat the default on new seeds for {len(beat)} of {len(judged)} variants**"
        + (f" ({', '.join(beat)})" if beat else "")
        + " (by the objective's paired mean difference over the seeds both settings ran).",
        "",
    ]
    if not items:
        return lines
    head = ["variant", "objective on trial seeds", "objective on new seeds"]
    head += [f"Δ {m} (better on)" for m in [items[0].objective, *metrics]]
    lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for i in items:
        cells = [
            i.variant,
            "—" if i.trial_value is None else num(i.trial_value),
            "—" if i.new_value is None else num(*i.new_value),
        ]
        for m in [i.objective, *metrics]:
            p = i.paired.get(m)
            cells.append("—" if p is None else f"{num(p.mean, p.se)} ({p.better}/{p.seeds})")
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "Δ is tuned − default on the same new seeds (mean ± s.e.); (n/N): the tuned setting "
        "was better on n of the N seeds. The objective on the trial seeds is what the study "
        "ranked the pick by; the gap to the new seeds is how optimistic the pick was.",
        "",
    ]
    return lines
