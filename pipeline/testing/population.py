"""The kit's check of a population form: K members against K single trainings."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pipeline.host.registry import Registry, default_registry
from pipeline.testing.contract import PluginContractError
from pipeline.testing.registration import registered
from pipeline.types import Constraint, Loss, Optimizer

#: relative difference (of max(1, |value|)) a member may show against its single training:
#: the same math in another order of float operations (batched matmuls); see
#: tests/test_population.py for what the built-ins give
TOLERANCE = 1e-4


def check_population(
    *,
    members: Sequence[Mapping[str, Mapping[str, Any]]],
    loss: str | type[Loss] = "wgan",
    constraint: str | type[Constraint] = "none",
    optimizer: str | type[Optimizer] = "adam",
    steps: int = 6,
    tolerance: float = TOLERANCE,
    registry: Registry | None = None,
) -> float:
    """Train ``len(members)`` members as one population (``pipeline tune --population``)
    and each as its own single training; every loss, penalty, diagnostic and metric must
    agree within ``tolerance``. ``members[k]`` maps a section (``constraint``,
    ``optimizer.critic``, …) to member k's settings; member k trains with seed k and
    n_critic 1 + k % 3, so masked critic steps are exercised. Returns the largest
    relative difference; raises :class:`PluginContractError` naming the plugins."""
    from pipeline.experiment.config import validate
    from pipeline.training.run import run_training
    from pipeline.tuning.population.loop import MemberHooks, PopulationLoop
    from pipeline.tuning.population.trainer import PopulationTrainer

    reg = registry if registry is not None else default_registry()
    choices = {"loss": loss, "constraint": constraint, "optimizer": optimizer}
    classes = [c for c in choices.values() if isinstance(c, type) and reg.info_of(c) is None]
    names = {k: c if isinstance(c, str) else c.name for k, c in choices.items()}
    label = ", ".join(f"{kind} {name!r}" for kind, name in names.items())
    with registered(*classes, registry=reg):
        exps = []
        for k, settings in enumerate(members):
            data: dict[str, Any] = {
                "name": "check_population",
                "dataset": {"name": "grid25"},
                "model": {"name": "mlp", "g_width": 16, "d_width": 16},
                "loss": {"name": names["loss"], **settings.get("loss", {})},
                "constraint": {"name": names["constraint"], **settings.get("constraint", {})},
                "optimizer": {
                    role: {"name": names["optimizer"], **settings.get(f"optimizer.{role}", {})}
                    for role in ("generator", "critic")
                },
                "train": {
                    "steps": steps, "n_critic": 1 + k % 3, "seed": k, "batch_size": 32,
                    "eval_every": max(1, steps // 2), "eval_samples": 256,
                    "log_every": max(1, steps // 3), "device": "cpu",
                },
                "metrics": ["w1"],
            }  # fmt: skip
            exps.append(validate(data, reg))
        singles = [run_training(e, tracking=None, progress=False) for e in exps]
        ended: dict[int, Any] = {}

        class Keep(MemberHooks):
            def on_end(self, k, member, result, error) -> None:
                ended[k] = error if error is not None else member

        PopulationLoop(PopulationTrainer(exps, device="cpu"), Keep()).run()
    worst = 0.0
    for k, single in enumerate(singles):
        member = ended[k]
        if isinstance(member, BaseException):
            raise PluginContractError(f"population with {label}: member {k} failed: {member}")
        history = single.history | {f"metric/{s}": v for s, v in _metrics(single).items()}
        theirs = member.history | {f"metric/{s}": v for s, v in _metrics(member).items()}
        if set(history) != set(theirs):
            raise PluginContractError(
                f"population with {label}: member {k} logs {sorted(theirs)}, its single "
                f"training {sorted(history)}"
            )
        for key, (_, values) in history.items():
            for step, (a, b) in enumerate(zip(values, theirs[key][1], strict=True)):
                diff = abs(a - b) / max(1.0, abs(a))
                worst = max(worst, diff)
                if not diff <= tolerance:
                    raise PluginContractError(
                        f"population with {label}: member {k}'s {key} (value {step}) is {b}, "
                        f"its single training's {a} (tolerance {tolerance})"
                    )
    return worst


def _metrics(record: Any) -> dict[str, tuple[list[int], list[float]]]:
    out: dict[str, tuple[list[int], list[float]]] = {}
    for step, metrics in record.evaluations:
        for key, value in metrics.items():
            steps, values = out.setdefault(key, ([], []))
            steps.append(step)
            values.append(value)
    return out
