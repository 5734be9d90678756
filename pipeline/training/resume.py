"""``pipeline train --resume``: loading the checkpoint, and whether it may be resumed under
an experiment."""

from __future__ import annotations

import os
import tempfile
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError
from pipeline.experiment.config import Experiment
from pipeline.experiment.tree import flatten

if TYPE_CHECKING:
    from pipeline.tracking.client import TrackingSettings

#: keys a resumed run may change: a longer budget, another device, its own bookkeeping
RESUMABLE_CHANGES = (
    "train.steps",
    "train.device",
    "train.eval_every",
    "train.log_every",
    "train.checkpoint_every",
)

#: settings added after checkpoints were written, with the value that trains as before:
#: a checkpoint without the key was trained with it
ADDED_SETTINGS: dict[str, Any] = {
    "train.g_ema": 0.0,
    "train.lr_decay": "none",
    "train.lr_decay_start": 0.0,
    "model.pack": 1,
}


def check_resumable(exp: Experiment, state: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint under other hyperparameters (mimicry's rule): only
    the budget, device and logging cadence may change, and the step must lie ahead."""
    new = flatten({k: v for k, v in exp.resolved.items() if k != "tune"})
    added = {k: v for k, v in ADDED_SETTINGS.items() if k in new}  # model.pack: mlp only
    old = added | flatten({k: v for k, v in state["config"].items() if k != "tune"})
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


def load_resume(source: str, tracking: TrackingSettings) -> dict[str, Any]:
    """A checkpoint from a file, or from ``runs:/<run_id>`` (its ``checkpoint/`` artifact).

    Loaded with ``torch.load(weights_only=True)``
    (:func:`pipeline.training.checkpoint.load_checkpoint`):
    a file that is not a checkpoint is bad input naming it, and nothing in it runs.
    """
    from pipeline.tracking.client import client_for
    from pipeline.training.checkpoint import CheckpointError, load_checkpoint

    if source.startswith("runs:/"):
        run_id = source.removeprefix("runs:/").strip("/")
        # one file: MLflow's "Downloading artifacts" bar would only bury the error line
        os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = client_for(tracking).download_artifacts(
                    run_id, "checkpoint/checkpoint.pt", tmp
                )
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise ConfigError("--resume", f"no checkpoint in run {run_id}: {first}") from None
            try:
                return load_checkpoint(path, shown_as=f"{source} (checkpoint/checkpoint.pt)")
            except CheckpointError as exc:
                raise ConfigError("--resume", str(exc)) from None
    if not os.path.isfile(source):
        raise ConfigError("--resume", f"checkpoint {source!r} does not exist")
    try:
        return load_checkpoint(source)
    except CheckpointError as exc:
        raise ConfigError("--resume", str(exc)) from None
