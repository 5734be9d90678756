"""A short real training with the plugins under test: the kit's smoke test."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pipeline.errors import NonFiniteLossError
from pipeline.host.blame import PluginRuntimeError
from pipeline.host.registry import Registry, default_registry
from pipeline.testing.contract import PluginContractError
from pipeline.testing.registration import registered
from pipeline.types import Constraint, Dataset, Loss, Model, Optimizer


def check_trains(
    *,
    loss: str | type[Loss] = "wgan",
    constraint: str | type[Constraint] = "none",
    optimizer: str | type[Optimizer] = "adam",
    dataset: str | type[Dataset] = "ring8",
    model: str | type[Model] = "mlp",
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int = 20,
    registry: Registry | None = None,
):
    """Train a tiny experiment with these plugins through the real loop (untracked).

    Plugins are names, or classes registered for the length of the call. ``settings``
    maps a section (``loss``, ``constraint``, ``optimizer.critic``, …) to settings.
    Every logged value and every metric must stay finite; returns the ``TrainResult``.
    """
    from pipeline.experiment.config import validate
    from pipeline.training.run import run_training

    reg = registry if registry is not None else default_registry()
    choices = {
        "dataset": dataset,
        "model": model,
        "loss": loss,
        "constraint": constraint,
        "optimizer.generator": optimizer,
        "optimizer.critic": optimizer,
    }
    classes = list(
        {c: None for c in choices.values() if isinstance(c, type) and reg.info_of(c) is None}
    )
    settings = dict(settings or {})
    data: dict[str, Any] = {
        "name": "check_trains",
        "optimizer": {},
        "train": {
            "steps": steps,
            "n_critic": 2,
            "batch_size": 64,
            "eval_every": steps,
            "eval_samples": 256,
            "log_every": max(1, steps // 4),
            "device": "cpu",
        },
    }
    with registered(*classes, registry=reg):
        for section, choice in choices.items():
            name = choice if isinstance(choice, str) else choice.name
            body = {"name": name, **dict(settings.get(section, {}))}
            if "." in section:
                data["optimizer"][section.split(".")[1]] = body
            else:
                data[section] = body
        exp = validate(data, reg)
        label = ", ".join(
            f"{section} {c.info.name!r} ({c.info.origin})" for section, c in exp.plugins.items()
        )
        try:
            result = run_training(exp, tracking=None, progress=False)
        except (PluginRuntimeError, NonFiniteLossError) as exc:
            raise PluginContractError(f"training with {label} failed: {exc}") from exc
    for key, (_, values) in result.history.items():
        if not all(v == v and abs(v) != float("inf") for v in values):
            raise PluginContractError(f"training with {label}: {key} is not finite")
    if result.steps != steps:
        raise PluginContractError(f"training with {label} stopped at step {result.steps}")
    return result
