"""The comparison file of ``pipeline compare``: schema, loading, each variant's experiment.

A comparison asks "which loss / constraint is better on this data?" the way Lucic et al.
2018 ("Are GANs Created Equal? A Large-Scale Study") and Kurach et al. 2019 ("A
Large-Scale Study on Regularization and Normalization in GANs") answer it: every variant
gets the same tuning budget, the best setting of each is re-trained on several seeds, and
the answer carries error bars. The file::

    name: compare_losses_ring8          # default: the file's stem
    base: gan_ring8.yaml                # an experiment file (relative to this file) or inline
    variants:                           # name → overrides of the base (``-o`` keys)
      gan: {loss.name: bce, constraint.name: none}
      wgan_gp:
        overrides: {loss.name: wgan, constraint.name: gradient_penalty}
        tune: {constraint.weight: {type: float, low: 0.1, high: 100, log: true}}
    budget: {trials: 20}                # per variant, the same for all: trials and/or timeout_s
    seeds: 5                            # re-trainings of each best setting: 5 seeds after the
                                        # base's train.seed (the trials'), or a list of seeds
    defaults: true                      # also train each variant's untuned setting on them
    metrics: [modes, hq_fraction, reverse_kl]
    references:                         # published rows printed beside the results
      - {name: PacGAN4, source: "Lin et al. 2018, Table 1", dataset: ring8,
         values: {modes: 7.8, hq_fraction: 0.959, reverse_kl: 0.07}}

A variant's ``tune`` entries are added to (or, given as ``null``, removed from) the base's
``tune.params``. The fingerprint of the file (:func:`fingerprint`) is kept in the
comparison's parent run and in each variant's study: a rerun with a changed file is
refused, naming the fields that changed.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pipeline.errors import ConfigError
from pipeline.experiment.names import check_name, path_inside
from pipeline.experiment.tree import load_yaml, set_dotted

#: Lucic et al. 2018 re-train each model's best setting on many seeds, Kurach et al. 2019
#: on 5 and report the median; PacGAN/VEEGAN average 10 / 5 runs: 5 is the default
DEFAULT_SEEDS = 5
#: the VEEGAN/PacGAN toy metrics (gan-benchmarks.md)
DEFAULT_METRICS = ("modes", "hq_fraction", "reverse_kl")


class Budget(BaseModel):
    """The tuning budget of every variant (Lucic et al. 2018: the same for each model)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    trials: int | None = Field(None, ge=1)
    timeout_s: float | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _some_budget(self) -> Budget:
        if self.trials is None and self.timeout_s is None:
            raise ValueError("give trials and/or timeout_s")
        return self


class Variant(BaseModel):
    """One variant: overrides of the base (dotted keys) and extra search-space params."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    overrides: dict[str, Any] = Field(default_factory=dict)
    tune: dict[str, dict[str, Any] | None] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        """``gan: {loss.name: bce}`` is ``gan: {overrides: {loss.name: bce}}``."""
        if isinstance(data, dict) and not ({"overrides", "tune"} & set(data)):
            return {"overrides": data}
        return data if data is not None else {}


class Reference(BaseModel):
    """A published row: its values by metric name and where they come from."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    source: str
    #: the dataset its numbers are on; None: shown under every dataset
    dataset: str | None = None
    values: dict[str, float | str]


class ComparisonSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    #: the report folder's name and the prefix of each variant's study (names.py's rule)
    name: str
    description: str = ""
    base: str | dict[str, Any]
    variants: dict[str, Variant] = Field(min_length=1)
    budget: Budget
    seeds: list[int] = Field(default_factory=lambda: list(range(DEFAULT_SEEDS)), min_length=1)
    metrics: list[str] = Field(default_factory=lambda: list(DEFAULT_METRICS), min_length=1)
    references: list[Reference] = Field(default_factory=list)
    #: also train each variant's untuned setting (the base with its overrides) on the seeds:
    #: the default-vs-tuned rows Kurach et al. 2019 report side by side
    defaults: bool = False
    #: Optuna sampler and pruner by ``pipeline tune``'s names; ``sampler_seed`` seeds each
    #: variant's sampler alike
    sampler: str = "tpe"
    pruner: str = "median"
    sampler_seed: int | None = 0

    @field_validator("seeds", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        """``seeds: 5`` is seeds 0..4."""
        if isinstance(value, int) and not isinstance(value, bool):
            if value < 1:
                raise ValueError(f"must be ≥ 1 (got {value})")
            return list(range(value))
        return value

    @field_validator("seeds")
    @classmethod
    def _distinct(cls, value: list[int]) -> list[int]:
        if len(set(value)) != len(value):
            raise ValueError("seeds must be distinct")
        return value

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str) -> str:
        try:
            return check_name("name", value)
        except ConfigError as exc:
            raise ValueError(exc.message) from None

    @field_validator("variants")
    @classmethod
    def _names(cls, value: dict[str, Variant]) -> dict[str, Variant]:
        for name in value:  # part of a study name and a file name: names.py's rule
            try:
                check_name("variants", name)
            except ConfigError as exc:
                raise ValueError(f"variant name {exc.message}") from None
        return value


class Comparison:
    """A loaded comparison file: its spec, the base experiment tree and where it lives."""

    def __init__(
        self,
        spec: ComparisonSpec,
        base: dict[str, Any],
        path: Path,
        cli_keys: tuple[str, ...] = (),
    ) -> None:
        self.spec = spec
        self.base = base
        self.path = path
        #: the keys the command line's ``-o`` set on the base (an error there names the ``-o``)
        self.cli_keys = cli_keys

    def blame(self, variant: str, exc: ConfigError) -> ConfigError:
        """``exc`` from ``variant``'s tree, naming what is at fault: the command line's
        ``-o key`` when the field is one it set (and the variant does not set), else
        ``variants.<variant>.<field>``."""
        own = self.spec.variants[variant].overrides
        for key in self.cli_keys:
            hit = (
                exc.field == key
                or exc.field.startswith(key + ".")
                or key.startswith(exc.field + ".")
            )
            if hit and key not in own and exc.field:
                return ConfigError(f"-o {key}", exc.message)
        return ConfigError(f"variants.{variant}.{exc.field}".rstrip("."), exc.message)

    @property
    def name(self) -> str:
        return self.spec.name

    def study_name(self, variant: str) -> str:
        """Each variant's own Optuna study: ``<comparison>-<variant>``."""
        return f"{self.name}-{variant}"

    def variant_tree(self, variant: str) -> dict[str, Any]:
        """The base experiment with the variant's overrides and tune params applied (raw:
        :class:`pipeline.tuning.tuner.Tuner` validates it)."""
        from pipeline.experiment.config import apply_overrides
        from pipeline.host.registry import default_registry

        v = self.spec.variants[variant]
        overrides = [f"{k}={json.dumps(val)}" for k, val in v.overrides.items()]
        try:
            tree = apply_overrides(self.base, overrides, registry=default_registry(), note=_quiet)
        except ConfigError as exc:
            raise self.blame(variant, exc) from None
        params = dict((tree.get("tune") or {}).get("params") or {})
        for key, param in v.tune.items():
            if param is None:
                params.pop(key, None)
            else:
                params[key] = param
        if v.tune:
            set_dotted(tree, "tune.params", params)
        return tree

    def write_variant(self, variant: str, folder: Path) -> Path:
        """The variant's experiment as a YAML file in ``folder`` (what the tuner reads)."""
        path = path_inside(folder, f"{self.study_name(variant)}.yaml", "variants")
        path.write_text(yaml.safe_dump(self.variant_tree(variant), sort_keys=False))
        return path

    def fields(self) -> dict[str, str]:
        """A hash of each top-level field (the base as its loaded tree, so an edited base
        file counts as a change): the refusal of a changed file names the fields."""
        data = self.spec.model_dump(mode="json")
        data["base"] = self.base
        return {
            k: hashlib.sha256(json.dumps(v, sort_keys=True).encode()).hexdigest()[:16]
            for k, v in sorted(data.items())
            if k not in ("description", "references", "metrics")  # report-only fields
        }

    def fingerprint(self) -> str:
        """One hash of :meth:`fields`: what must not change while a comparison runs."""
        return hashlib.sha256(json.dumps(self.fields(), sort_keys=True).encode()).hexdigest()[:16]


def _quiet(message: str) -> None:
    """A variant switching a plugin drops the base's settings of that section: expected."""


def load_comparison(path: str | Path, overrides: tuple[str, ...] | list[str] = ()) -> Comparison:
    """Read and validate a comparison file; errors name the field. ``overrides``
    (``key=value``) change the base experiment of every variant (and so the fingerprint)."""
    path = Path(path)
    raw = load_yaml(path, "comparison file")
    try:
        spec = ComparisonSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"] if p not in ("function-after",))
        raise ConfigError(where or "comparison", err["msg"]) from None
    if isinstance(spec.base, str):
        base_path = (path.parent / spec.base).resolve()
        if not base_path.is_file():
            raise ConfigError("base", f"experiment file {spec.base!r} does not exist")
        base = load_yaml(base_path)
    else:
        base = dict(spec.base)
        base.setdefault("name", spec.name)
    cli_keys: tuple[str, ...] = ()
    if overrides:
        from pipeline.experiment.config import apply_overrides, parse_override

        base = apply_overrides(base, overrides)
        cli_keys = tuple(parse_override(text)[0] for text in overrides)
    if not isinstance(raw.get("seeds"), list):
        # a count of seeds: new ones after the seed the trials ran with, so the seed that
        # won the tuning is not counted again (Lucic et al. 2018 re-run the best on new seeds)
        # (seeds per trial, tune.seeds k: the trials ran on train.seed … train.seed + k - 1)
        trial_seeds = (base.get("tune") or {}).get("seeds", 1)
        trial_seeds = trial_seeds if isinstance(trial_seeds, int) and trial_seeds > 0 else 1
        first = int((base.get("train") or {}).get("seed", 0)) + trial_seeds
        spec = spec.model_copy(update={"seeds": [first + i for i in range(len(spec.seeds))]})
    comparison = Comparison(spec, base, path, cli_keys)
    from pipeline.tuning.factories import PRUNERS, SAMPLERS

    if spec.sampler not in SAMPLERS:
        raise ConfigError(
            "sampler", f"unknown sampler {spec.sampler!r}; choose from {list(SAMPLERS)}"
        )
    if spec.pruner not in PRUNERS:
        raise ConfigError("pruner", f"unknown pruner {spec.pruner!r}; choose from {list(PRUNERS)}")
    return comparison


def check_variants(comparison: Comparison) -> dict[str, Any]:
    """Validate every variant's experiment and search space before anything runs; returns
    the validated experiments by variant. Metrics to report must be computed by each."""
    from pipeline.experiment.config import validate
    from pipeline.host.registry import default_registry
    from pipeline.tuning.search_space import build_search_space

    registry = default_registry()
    out = {}
    for name in comparison.spec.variants:
        tree = comparison.variant_tree(name)
        try:
            exp = validate({k: v for k, v in tree.items() if k != "tune"}, registry)
            build_search_space(tree, registry)
        except ConfigError as exc:
            raise comparison.blame(name, exc) from None
        computed = {m.name for m in exp.metrics}
        missing = [m for m in comparison.spec.metrics if m not in computed]
        if missing:
            raise ConfigError(
                "metrics",
                f"variant {name!r} does not compute {', '.join(missing)} "
                f"(its metrics: {', '.join(sorted(computed))})",
            )
        out[name] = exp
    return out
