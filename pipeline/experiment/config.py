"""Experiment files: ``-o key=value`` overrides and complete validation.

Reading the file and addressing dotted keys is :mod:`pipeline.experiment.tree` (re-exported here).

An experiment is made only of named plugins plus the ``train`` settings. Everything is
validated before anything runs; the first problem becomes one :class:`ConfigError`
naming the dotted field (``train.n_critic``, ``constraint.weight``, ``loss.name``).

The critic takes one constraint (``constraint: {name: gradient_penalty, weight: 10}``) or
several (``constraints: {spectral_norm: {}, gradient_penalty: {weight: 1}}``, keyed by
plugin name so that ``constraints.gradient_penalty.weight`` is a dotted key like any
other; see :mod:`pipeline.experiment.constraints` and :mod:`pipeline.training.constraints`).
"""

from __future__ import annotations

import copy
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import ConfigError, PluginError
from pipeline.experiment.constraints import STACKED_CONSTRAINTS, validate_constraints
from pipeline.experiment.names import check_name
from pipeline.experiment.tree import flatten as flatten
from pipeline.experiment.tree import get_dotted, param_str
from pipeline.experiment.tree import load_yaml as load_yaml
from pipeline.experiment.tree import parse_override as parse_override
from pipeline.experiment.tree import set_dotted as set_dotted
from pipeline.host.choice import PluginChoice, choose, settings_error
from pipeline.host.registry import PluginInfo, Registry
from pipeline.types import Kind, Settings

PLUGIN_SECTIONS: tuple[tuple[str, Kind], ...] = (
    ("dataset", "dataset"),
    ("model", "model"),
    ("loss", "loss"),
    ("constraint", "constraint"),
    ("optimizer.generator", "optimizer"),
    ("optimizer.critic", "optimizer"),
)
TOP_LEVEL_KEYS = (
    "name",
    "description",
    "dataset",
    "model",
    "loss",
    "constraint",
    "constraints",
    "optimizer",
    "train",
    "metrics",
    "tune",
)


class TrainSettings(BaseModel):
    """How to train. Defaults follow Gulrajani et al. 2017 (toy script: batch 256, n_critic 5)
    and the VEEGAN/PacGAN evaluation protocol (2,500 samples)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: generator steps
    steps: int = Field(2000, ge=1)
    #: critic steps per generator step (Arjovsky 2017; Gulrajani 2017: 5)
    n_critic: int = Field(5, ge=1)
    #: WGAN warm-up (Arjovsky 2017, main.py): this many critic steps for the first 25
    #: generator steps and every 500th; 0 turns it off, the paper uses 100
    n_critic_warmup: int = Field(0, ge=0)
    batch_size: int = Field(256, ge=1)
    seed: int = 0
    #: evaluate with the metric plugins every this many generator steps (and at the end)
    eval_every: int = Field(500, ge=1)
    #: samples per evaluation (VEEGAN/PacGAN protocol: 2,500)
    eval_samples: int = Field(2500, ge=1)
    #: send buffered per-step metrics to the tracker every this many generator steps;
    #: gradient norms and σ estimates are measured on these steps
    log_every: int = Field(25, ge=1)
    #: log the checkpoint to the run every this many steps, the latest replacing the
    #: previous (0: only the final one; an interrupted run logs its own either way)
    checkpoint_every: int = Field(0, ge=0)
    #: auto (CUDA when present), cpu, cuda or cuda:N
    device: str = Field("auto", pattern=r"^(auto|cpu|cuda(:\d+)?)$")
    #: decay β of an exponential moving average of the generator's weights (and batch-norm
    #: statistics), which then is what is evaluated, sampled and logged; 0 turns it off.
    #: Yazici et al. 2019 ("The Unusual Effectiveness of Averaging in GAN Training") use
    #: β = 0.999 and 0.9999 (BigGAN, Brock et al. 2019: 0.9999); short runs want 0.999
    g_ema: float = Field(0.0, ge=0.0, lt=1.0)
    #: learning-rate schedule of both optimizers: ``none`` keeps the optimizers' own rates;
    #: ``linear`` scales them by a factor that falls linearly from 1 to 0 over the steps
    #: from ``lr_decay_start`` (a fraction of ``steps``) to the end, as the WGAN-GP image
    #: code (Gulrajani et al. 2017, gan_cifar_resnet.py: ``1 - step/steps``) and SN-GAN's
    #: code (Miyato et al. 2018, sngan_projection: Adam's α shifted linearly to 0) do
    lr_decay: Literal["none", "linear"] = "none"
    #: where the linear decay begins, as a fraction of ``steps`` (0: from the first step)
    lr_decay_start: float = Field(0.0, ge=0.0, lt=1.0)


@dataclass(frozen=True)
class Experiment:
    """A fully validated experiment: plugin choices, train settings and the resolved dict."""

    name: str
    train: TrainSettings
    plugins: dict[str, PluginChoice]
    metrics: list[PluginInfo]
    resolved: dict[str, Any]
    tune: dict[str, Any] = field(default_factory=dict)
    #: settings of each metric, by name (``metrics: [{name: precision, k: 5}]``)
    metric_settings: dict[str, Settings] = field(default_factory=dict)

    def flat_params(self) -> dict[str, str]:
        """The resolved config under dotted keys, as MLflow params (``tune`` excluded)."""
        resolved = {k: v for k, v in self.resolved.items() if k != "tune"}
        return {k: param_str(v) for k, v in flatten(resolved).items()}


# -- overrides ------------------------------------------------------------------


def apply_overrides(
    raw: dict[str, Any],
    overrides: list[str] | tuple[str, ...],
    *,
    registry: Registry | None = None,
    note: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """A copy of ``raw`` with each ``key.path=value`` set (sections created as needed).

    With a ``registry``, ``-o section.name=other`` replaces the file's plugin the way a
    tune: categorical does: the file's settings of that section that ``other`` does not have
    are dropped, and ``note`` (default: stderr) says which. Settings given as overrides stay
    strict: ``-o constraint.name=gradient_penalty -o constraint.n_power_iterations=2`` is
    refused, naming ``constraint.n_power_iterations``.
    """
    data = copy.deepcopy(raw)
    parsed = [parse_override(text) for text in overrides]
    if registry is not None:
        for key, value in parsed:
            _switch_plugin(data, key, value, registry, note or _to_stderr)
    for key, value in parsed:
        set_dotted(data, key, value)
    return data


def _to_stderr(message: str) -> None:
    print(message, file=sys.stderr)


def _switch_plugin(
    data: dict[str, Any], key: str, value: Any, registry: Registry, note: Callable[[str], None]
) -> None:
    """Drop the file's settings of ``section`` that the plugin ``key``'s new value lacks."""
    for section, kind in PLUGIN_SECTIONS:
        if key != f"{section}.name":
            continue
        node = get_dotted(data, section)
        if not isinstance(node, dict) or node.get("name") == value:
            return
        if not isinstance(value, str) or not registry.has(kind, value):
            return  # validation names the unknown plugin
        fields = registry.get(kind, value).cls.Settings.model_fields
        dropped = [k for k in node if k != "name" and k not in fields]
        for k in dropped:
            del node[k]
        if dropped:
            note(
                f"note: {key}={value} replaces {node.get('name')!r}; dropped the file's "
                f"{', '.join(f'{section}.{k}' for k in dropped)} ({value} has no such setting)"
            )
        return


# -- validation ------------------------------------------------------------------


def _validate_plugin_section(
    data: dict[str, Any], section: str, kind: Kind, registry: Registry
) -> PluginChoice:
    node = get_dotted(data, section)
    if node is None:
        raise ConfigError(section, f"missing section (it needs at least a {kind} 'name')")
    if not isinstance(node, dict):
        raise ConfigError(section, f"must be a mapping with a 'name', got {node!r}")
    name = node.get("name")
    if not isinstance(name, str):
        raise ConfigError(
            f"{section}.name",
            f"missing or not a string; available: {', '.join(registry.names(kind))}",
        )
    try:
        info = registry.get(kind, name)
    except PluginError as exc:
        raise ConfigError(f"{section}.name", str(exc)) from None
    return choose(section, info, {k: v for k, v in node.items() if k != "name"})


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _metric_choices(entries: Any, registry: Registry) -> list[tuple[PluginInfo, Settings, bool]]:
    """``metrics:`` is a list of names or ``{name: …, <setting>: …}`` mappings: each metric
    with its validated settings and whether the entry set any. Needs no data, so a bad
    metric is refused before the dataset loads."""
    if not isinstance(entries, list):
        raise ConfigError("metrics", "must be a list of metric names or {name: …} mappings")
    choices: list[tuple[PluginInfo, Settings, bool]] = []
    for entry in entries:
        if isinstance(entry, str):
            name, values = entry, {}
        elif isinstance(entry, dict) and isinstance(entry.get("name"), str):
            name, values = entry["name"], {k: v for k, v in entry.items() if k != "name"}
        else:
            raise ConfigError("metrics", f"{entry!r} is neither a metric name nor {{name: …}}")
        try:
            info = registry.get("metric", name)
        except PluginError as exc:
            raise ConfigError("metrics", str(exc)) from None
        choices.append((info, choose(f"metrics.{name}", info, values).settings, bool(values)))
    return choices


def _validate_metrics(
    choices: list[tuple[PluginInfo, Settings, bool]] | None,
    dataset: Any,
    dataset_name: str,
    registry: Registry,
) -> tuple[list[PluginInfo], dict[str, Settings], list[Any]]:
    """The chosen metrics (:func:`_metric_choices`), each of which must apply to the
    dataset; ``None``: every metric that applies to it, with its default settings."""
    if choices is None:
        names = [
            n
            for n in registry.names("metric")
            if registry.get("metric", n).cls().applies_to(dataset)
        ]
        choices = _metric_choices(names, registry)
    infos: list[PluginInfo] = []
    settings: dict[str, Settings] = {}
    resolved: list[Any] = []
    for info, chosen, explicit in choices:
        name = info.name
        if not info.cls(chosen).applies_to(dataset):
            raise ConfigError(
                "metrics", f"metric {name!r} does not apply to dataset {dataset_name!r}"
            )
        infos.append(info)
        settings[name] = chosen
        resolved.append({"name": name, **_jsonable(chosen.model_dump())} if explicit else name)
    return infos, settings, resolved


def validate(data: dict[str, Any], registry: Registry) -> Experiment:
    """Validate a whole experiment dict (after overrides) against the registry."""
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(str(key), f"unknown key (allowed: {', '.join(TOP_LEVEL_KEYS)})")
    name = check_name("name", data.get("name"))  # it becomes the artifact folder's name
    optimizer = data.get("optimizer")
    if isinstance(optimizer, dict):
        for key in optimizer:
            if key not in ("generator", "critic"):
                raise ConfigError(f"optimizer.{key}", "unknown key (allowed: critic, generator)")
    train_raw = data.get("train") or {}
    if not isinstance(train_raw, dict):
        raise ConfigError("train", f"must be a mapping, got {train_raw!r}")
    try:
        train = TrainSettings.model_validate(train_raw)
    except ValidationError as exc:
        raise settings_error("train", exc, TrainSettings) from None

    plugins: dict[str, PluginChoice] = {}
    for section, kind in PLUGIN_SECTIONS:
        # ``constraints: null`` counts as absent: ``-o constraints=null`` drops the file's
        if section == "constraint" and data.get(STACKED_CONSTRAINTS) is not None:
            plugins.update(validate_constraints(data, registry))
        else:
            plugins[section] = _validate_plugin_section(data, section, kind, registry)
    metric_choices = (
        None if data.get("metrics") is None else _metric_choices(data["metrics"], registry)
    )
    pack = getattr(plugins["model"].settings, "pack", 1)
    if isinstance(pack, int) and pack > 1 and train.batch_size % pack:
        raise ConfigError(
            "train.batch_size",
            f"must be a multiple of model.pack ({pack}): the critic scores packs of "
            f"{pack} real or {pack} fake samples (PacGAN); got {train.batch_size}",
        )
    tune = data.get("tune") or {}
    if not isinstance(tune, dict):
        raise ConfigError("tune", "must be a mapping")
    # only now the data (and torch): everything above is refused without loading them
    try:
        dataset = plugins["dataset"].instantiate()
    except ConfigError:
        raise
    except Exception as exc:  # a missing folder, an unreadable file: bad input, not a crash
        info = plugins["dataset"].info
        raise ConfigError(
            "dataset", f"{info.name!r} ({info.origin}) could not load its data: {exc}"
        ) from None
    metrics, metric_settings, metric_entries = _validate_metrics(
        metric_choices, dataset, plugins["dataset"].info.name, registry
    )

    resolved: dict[str, Any] = {"name": name}
    if data.get("description"):
        resolved["description"] = str(data["description"])
    for section, choice in plugins.items():
        body = {"name": choice.info.name, **_jsonable(choice.settings.model_dump())}
        if section.startswith(f"{STACKED_CONSTRAINTS}."):
            del body["name"]  # the key is the name
            resolved.setdefault(STACKED_CONSTRAINTS, {})[choice.info.name] = body
        elif "." in section:
            outer, inner = section.split(".")
            resolved.setdefault(outer, {})[inner] = body
        else:
            resolved[section] = body
    resolved["train"] = train.model_dump()
    resolved["metrics"] = metric_entries
    if tune:
        resolved["tune"] = tune
    return Experiment(
        name=name,
        train=train,
        plugins=plugins,
        metrics=metrics,
        resolved=resolved,
        tune=tune,
        metric_settings=metric_settings,
    )


def load_experiment(
    path: str | Path,
    overrides: list[str] | tuple[str, ...] = (),
    *,
    registry: Registry,
    note: Callable[[str], None] | None = None,
) -> Experiment:
    """Load, override and validate an experiment file (see :func:`apply_overrides`)."""
    data = apply_overrides(load_yaml(path), overrides, registry=registry, note=note)
    return validate(data, registry)
