"""Whether a checkpoint may be resumed under an experiment (``pipeline train --resume``)."""

from __future__ import annotations

from typing import Any

from pipeline.config import Experiment
from pipeline.config_tree import flatten
from pipeline.errors import ConfigError

#: keys a resumed run may change: a longer budget, another device, its own bookkeeping
RESUMABLE_CHANGES = (
    "train.steps",
    "train.device",
    "train.eval_every",
    "train.log_every",
    "train.checkpoint_every",
)


def check_resumable(exp: Experiment, state: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint under other hyperparameters (mimicry's rule): only
    the budget, device and logging cadence may change, and the step must lie ahead."""
    old = flatten({k: v for k, v in state["config"].items() if k != "tune"})
    new = flatten({k: v for k, v in exp.resolved.items() if k != "tune"})
    changed = sorted(
        k for k in set(old) | set(new) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)
    )
    if changed:
        shown = ", ".join(f"{k} ({old.get(k)!r} → {new.get(k)!r})" for k in changed[:4])
        raise ConfigError("--resume", f"the checkpoint was trained with other settings: {shown}")
    if int(state["step"]) >= exp.train.steps:
        raise ConfigError(
            "train.steps",
            f"the checkpoint is at step {state['step']}; ask for more steps to resume "
            f"(got {exp.train.steps})",
        )
