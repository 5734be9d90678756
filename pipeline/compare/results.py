"""What a comparison's report and plots read: the comparison's record and each variant's
results. Data only: the runner hands a :class:`ComparisonRecord` to
:func:`pipeline.compare.report.write_report`, which never sees the runner itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import optuna

    from pipeline.compare.file import Comparison
    from pipeline.experiment.config import Experiment
    from pipeline.tracking.client import RunTracker, TrackingSettings


@dataclass(frozen=True)
class ComparisonRecord:
    """A comparison as its report reads it: the file, the variants' experiments, the
    MLflow parent run and each variant's study (None: not started)."""

    comparison: Comparison
    experiments: dict[str, Experiment]
    tracking: TrackingSettings
    parent: RunTracker
    studies: dict[str, optuna.Study | None]


@dataclass
class SeedRun:
    seed: int
    run_id: str
    metrics: dict[str, float]
    wall_time_s: float
    cpu_time_s: float


@dataclass
class VariantResult:
    name: str
    dataset: str
    #: the objective's label (a metric, or a weighted sum written out) and its weights
    objective: str
    direction: str
    weights: dict[str, float] = field(default_factory=dict)
    trials: dict[str, int] = field(default_factory=dict)
    #: each trial's objective in trial order (None: pruned, failed or running)
    values: list[float | None] = field(default_factory=list)
    tuning_wall_s: float = 0.0
    tuning_cpu_s: float = 0.0
    best_value: float | None = None
    setting: dict[str, Any] = field(default_factory=dict)
    seeds: list[SeedRun] = field(default_factory=list)
    #: metric → (mean, standard error) over the seeds
    stats: dict[str, tuple[float, float]] = field(default_factory=dict)
    #: the variant's untuned setting (``defaults: true``), not its study's best
    default: bool = False
    #: metric → Spearman's ρ between the objective and the metric over the finished trials
    #: (what the objective rewards: see :func:`objective_agreement`)
    agreement: dict[str, float] = field(default_factory=dict)
    #: (picked by, trial number, that trial's final metrics): the trial the objective picks
    #: and the trial each metric would pick (see :func:`trial_picks`)
    picks: list[tuple[str, int, dict[str, float]]] = field(default_factory=list)
    #: each metric's direction (``minimize``/``maximize``), as its plugin declares it
    directions: dict[str, str] = field(default_factory=dict)

    @property
    def seed_cpu_s(self) -> float:
        return sum(s.cpu_time_s for s in self.seeds)

    def median_seed(self) -> SeedRun | None:
        """The seed run at the median of the objective (the lower one of an even count):
        Kurach et al. 2019 report the median over seeds."""
        weights = self.weights or {self.objective: 1.0}
        ranked = [s for s in self.seeds if objective_value(s.metrics, weights) is not None]
        if not ranked:
            return None
        ranked.sort(key=lambda s: objective_value(s.metrics, weights))  # type: ignore[arg-type,return-value]
        return ranked[(len(ranked) - 1) // 2]


def objective_value(metrics: dict[str, float], weights: dict[str, float]) -> float | None:
    """The objective (``{metric: weight}`` summed) from a run's metrics; None if one is
    missing."""
    if any(name not in metrics for name in weights):
        return None
    return sum(w * metrics[name] for name, w in weights.items())
