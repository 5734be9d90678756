"""The ``tune:`` section of an experiment file: search space and objective.

::

    tune:
      objective: {metric: w1}              # direction defaults to the metric's own
      # or a weighted sum of metrics (direction required), e.g. the mode-coverage and
      # sample-quality columns of VEEGAN/PacGAN's tables in one number:
      # objective: {metric: {reverse_kl: 1.0, hq_fraction: -1.0}, direction: minimize}
      # with several seeds per trial, rank by the worst seed rather than the mean:
      # objective: {metric: w1, over_seeds: worst}
      # seeds: 3
      params:
        train.n_critic: {type: int, low: 1, high: 10}
        constraint.name: {type: categorical, choices: [gradient_penalty, weight_clipping]}
        constraint.weight: {type: float, low: 0.01, high: 100, log: true,
                            when: {constraint.name: gradient_penalty}}
        constraint.clip: {type: float, low: 0.001, high: 1, log: true,
                          when: {constraint.name: weight_clipping}}

Any config key can be searched. A parameter with ``when`` is sampled only when the
named parameters took those values (conditional spaces, as Optuna's define-by-run API
allows). When a ``<section>.name`` is sampled and differs from the file's plugin, that
section's file settings are dropped, so the other plugin starts from its own defaults.

The whole space is validated before any trial runs: every parameter's bounds, and an
experiment built from each bound and each choice, so an unknown key, a wrong type, an
out-of-range bound or a plugin name that does not exist is refused with its name.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from pipeline.errors import ConfigError, PipelineError
from pipeline.experiment.config import Experiment, set_dotted, validate
from pipeline.host.registry import Registry


class ParamSpec(BaseModel):
    """One searched config key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["int", "float", "categorical"]
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: list[Any] | None = None
    #: sample only when these (already sampled) parameters took these values
    when: dict[str, Any] = Field(default_factory=dict)
    #: explicit values for the grid sampler (floats need them)
    grid: list[Any] | None = None

    @model_validator(mode="after")
    def _check(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None:
                raise ValueError("a categorical takes 'choices', not 'low'/'high'")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"an {self.type} needs 'low' and 'high'")
        if self.choices is not None:
            raise ValueError(f"an {self.type} takes 'low'/'high', not 'choices'")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) > high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log scale needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("'step' and 'log' cannot be combined (Optuna refuses it)")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int needs integer 'low' and 'high'")
        return self

    def bounds(self) -> list[Any]:
        """The values validated before the search: both bounds, or every choice."""
        if self.type == "categorical":
            return list(self.choices or [])
        if self.type == "int":
            return [int(self.low), int(self.high)]  # type: ignore[arg-type]
        return [self.low, self.high]

    def grid_values(self, key: str) -> list[Any]:
        if self.grid is not None:
            return list(self.grid)
        if self.type == "categorical":
            return list(self.choices or [])
        if self.type == "int":
            step = int(self.step or 1)
            return list(range(int(self.low), int(self.high) + 1, step))  # type: ignore[arg-type]
        raise ConfigError(f"tune.params.{key}", "the grid sampler needs 'grid' values for a float")


class ObjectiveSpec(BaseModel):
    """What a trial is ranked by: one metric (sliced W1 by default: a distance to the data
    that rewards covering every mode, cheap on 2-D data), or a weighted sum of metrics,
    ``{name: weight}``, for when one metric rewards the wrong thing (a sum keeps Optuna's
    pruning and one best trial, which a multi-objective study would give up)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: str | dict[str, float] = "w1"
    direction: Literal["minimize", "maximize"] | None = None
    #: with ``tune.seeds`` ≥ 2, what ranks a trial: the mean over its seeds, or its worst
    #: seed (the largest value when minimizing). The mean let a setting whose one seed
    #: underfed a mode win on the others (docs/results.md, ring8 round two: 8 and 8 modes on
    #: the trial seeds, 6 on a new one); the worst seed asks every seed to hold, as the
    #: re-training on new seeds will (Lucic et al. 2018 report the spread over seeds for the
    #: same reason)
    over_seeds: Literal["mean", "worst"] = "mean"

    @model_validator(mode="after")
    def _check(self) -> ObjectiveSpec:
        if isinstance(self.metric, dict):
            if not self.metric:
                raise ValueError("metric: give a metric name or a non-empty {metric: weight}")
            if self.direction is None:
                raise ValueError("a weighted sum of metrics needs a direction")
        return self

    def weights(self) -> dict[str, float]:
        """``{metric: weight}``: one metric weighs 1."""
        return dict(self.metric) if isinstance(self.metric, dict) else {self.metric: 1.0}

    def label(self) -> str:
        """The objective's name in lines, tags and reports (``reverse_kl - hq_fraction``,
        ``w1 (worst seed)``)."""
        worst = " (worst seed)" if self.over_seeds == "worst" else ""
        if isinstance(self.metric, str):
            return self.metric + worst
        out = ""
        for name, w in self.metric.items():
            size = "" if abs(w) == 1 else f"{abs(w):g}*"
            sign = ("-" if w < 0 else "") if not out else (" - " if w < 0 else " + ")
            out += f"{sign}{size}{name}"
        return out + worst


class TuneSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    objective: ObjectiveSpec = Field(default_factory=ObjectiveSpec)
    params: dict[str, ParamSpec] = Field(default_factory=dict)
    #: seeds per trial: each trial trains on train.seed … train.seed + seeds - 1 and
    #: reports the mean (:mod:`pipeline.tuning.trial_seeds`); Kurach et al. 2019 train each
    #: setting on 5 seeds. 1: one seed per trial, as Optuna's examples do
    seeds: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _worst_needs_seeds(self) -> TuneSpec:
        if self.objective.over_seeds == "worst" and self.seeds < 2:
            raise ValueError("objective.over_seeds 'worst' needs tune.seeds of 2 or more")
        return self


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space over an experiment's raw config."""

    base: dict[str, Any]
    spec: TuneSpec
    #: the objective's label: the metric's name, or the weighted sum written out
    metric: str
    direction: Literal["minimize", "maximize"]

    @property
    def params(self) -> dict[str, ParamSpec]:
        return self.spec.params

    def value(self, metrics: dict[str, float]) -> float:
        """The objective from an evaluation's metrics (a weighted sum if so declared). With
        ``over_seeds: worst`` and a trial's combined metrics (``<metric>/seed_<s>``, from
        :func:`pipeline.tuning.trial_seeds.summarise`): its worst seed's value, NaN if any
        seed's is."""
        weights = self.spec.objective.weights()
        mean = float(sum(w * metrics[name] for name, w in weights.items()))
        first = next(iter(weights))
        seeds = [k.split("/seed_", 1)[1] for k in metrics if k.startswith(f"{first}/seed_")]
        if self.spec.objective.over_seeds == "mean" or not seeds:
            return mean
        values = [sum(w * metrics[f"{n}/seed_{s}"] for n, w in weights.items()) for s in seeds]
        if any(math.isnan(v) for v in values):
            return math.nan
        return float(max(values) if self.direction == "minimize" else min(values))

    def suggest(self, trial) -> dict[str, Any]:
        """Sample one point with an Optuna trial (define-by-run, conditionals honoured)."""
        values: dict[str, Any] = {}
        for key, p in self.params.items():
            if any(values.get(k, _MISSING) != v for k, v in p.when.items()):
                continue
            if p.type == "categorical":
                values[key] = trial.suggest_categorical(key, p.choices)
            elif p.type == "int":
                values[key] = trial.suggest_int(
                    key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log
                )
            else:
                values[key] = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
        return values

    def apply(self, values: dict[str, Any]) -> dict[str, Any]:
        """The raw config with ``values`` set (a switched plugin drops the file's settings)."""
        data = copy.deepcopy(self.base)
        data.pop("tune", None)
        for key, value in values.items():
            if key.endswith(".name"):
                section = key.removesuffix(".name")
                node = _get(data, section)
                if isinstance(node, dict) and node.get("name") != value:
                    set_dotted(data, section, {"name": value})
        for key, value in values.items():
            set_dotted(data, key, value)
        return data

    def grid(self) -> dict[str, list[Any]]:
        return {key: p.grid_values(key) for key, p in self.params.items()}


_MISSING = object()


def _get(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def build_search_space(
    base: dict[str, Any], registry: Registry, *, require_params: bool = True
) -> SearchSpace:
    """Validate ``base['tune']`` against the experiment and the registry."""
    raw = base.get("tune")
    if raw is None:
        raise ConfigError("tune", "the experiment file has no 'tune:' section to search")
    try:
        spec = TuneSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise ConfigError(f"tune.{loc}" if loc else "tune", msg) from None
    if require_params and not spec.params:
        raise ConfigError("tune.params", "empty: declare at least one config key to search")
    for key, p in spec.params.items():
        for dep in p.when:
            if dep not in spec.params or list(spec.params).index(dep) > list(spec.params).index(
                key
            ):
                raise ConfigError(
                    f"tune.params.{key}.when",
                    f"{dep!r} must be a searched parameter declared before {key!r}",
                )
    # the base experiment itself, then every bound and choice of every parameter
    plain = copy.deepcopy(base)
    plain.pop("tune", None)
    exp = _validate_point(plain, registry, "tune")
    names = [m.name for m in exp.metrics]
    for metric in spec.objective.weights():
        if metric not in names:
            raise ConfigError(
                "tune.objective.metric",
                f"{metric!r} is not one of the experiment's metrics ({', '.join(names)})",
            )
    direction = spec.objective.direction or exp.metrics[names.index(metric)].cls.direction
    space = SearchSpace(base=base, spec=spec, metric=spec.objective.label(), direction=direction)
    for key, p in spec.params.items():
        context = {dep: [val] for dep, val in p.when.items()}
        for value in p.bounds():
            for combo in _combinations(context):
                point = {**combo, key: value}
                _validate_point(space.apply(point), registry, f"tune.params.{key}", value)
    return space


def _combinations(context: dict[str, list[Any]]):
    keys = list(context)
    for values in itertools.product(*(context[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def _validate_point(
    data: dict[str, Any], registry: Registry, where: str, value: Any = _MISSING
) -> Experiment:
    try:
        return validate(data, registry)
    except PipelineError as exc:
        got = "" if value is _MISSING else f" with value {value!r}"
        raise ConfigError(where, f"invalid{got}: {exc}") from None
