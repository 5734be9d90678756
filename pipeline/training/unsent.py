"""What a run keeps on local disk when its MLflow tracking server goes away.

Called by :func:`pipeline.training.run.run_training` once, after :class:`TrackingUnavailable`;
calls the trainer (checkpoint, samples) and the tracker (unsent rows, marking FAILED).

The folder is ``<unsent_dir>/<run_id>/`` (``unsent_dir`` from ``mlflow.yaml``, default
``gan-pipeline-unsent`` in the current directory, like ``mlflow.db``: the artifact
location may be remote and the run's working folder is a temp folder deleted on exit). It
holds:

- ``checkpoint.pt``: the nets, optimizers, step and RNG states at the step training
  stopped, written by :meth:`Trainer.save_checkpoint` (load with
  :func:`pipeline.training.checkpoint.load_checkpoint`; resume with ``--resume``);
- ``config.yaml``: the resolved experiment; it is an experiment file of its own, so
  ``pipeline train <folder>/config.yaml --resume <folder>/checkpoint.pt`` resumes
  with exactly the settings the checkpoint was trained with;
- ``samples/`` (the sample plots drawn so far), ``samples.npy`` (2-D datasets: the
  generator's evaluation samples at that step), and whatever else the run had written;
- ``unsent_metrics.csv``: ``key,value,step`` of every metric row MLflow did not
  acknowledge (a batch that failed, and all rows after it), in logging order. A CSV
  because any tool reads it, and each row maps to one ``mlflow.entities.Metric`` should
  the user want to log them into the run later;
- ``run.json``: the run id, experiment, tracking URI (without credentials), the step,
  the reason, whether the run could be marked FAILED on the server (one bounded try;
  when the server is still down, the run stays RUNNING there and this file says which
  run that is), and the status it would have ended with (``true_status``).

``pipeline sync`` (:mod:`pipeline.training.sync`) sends all of it once the server is back.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import yaml

from pipeline.tracking.client import RunTracker, TrackingSettings
from pipeline.tracking.http import TrackingUnavailable, display_uri

if TYPE_CHECKING:
    from pipeline.training.trainer import Trainer


def keep_unsent(
    trainer: Trainer,
    tracker: RunTracker,
    lost: TrackingUnavailable,
    settings: TrackingSettings,
    *,
    after: BaseException | None = None,
) -> TrackingUnavailable:
    """Write the run's folder, try once to mark the run FAILED, and return the error to
    raise: one line naming the folder and the command that resumes the run."""
    folder = (Path(settings.unsent_dir) / tracker.run_id).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    try:
        tracker.drain()  # jobs after the failure return at once; their rows are kept
    except Exception:  # another background error changes nothing here
        pass
    if trainer.workdir.is_dir():
        shutil.copytree(trainer.workdir, folder, dirs_exist_ok=True)
    config = folder / "config.yaml"
    if not config.exists():
        config.write_text(yaml.safe_dump(trainer.exp.resolved, sort_keys=False))
    checkpoint = trainer.save_checkpoint(folder / "checkpoint.pt")
    if not trainer.dataset.is_image and not (folder / "samples.npy").exists():
        np.save(folder / "samples.npy", trainer.sample().numpy())
    rows = tracker.unsent_metrics + trainer.run_log.unsent
    with open(folder / "unsent_metrics.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["key", "value", "step"])
        writer.writerows((key, repr(float(value)), int(step)) for key, value, step in rows)

    reason = f"tracking server unreachable at step {trainer.step}: {lost.reason}"
    if after is not None:
        reason += f" (while ending the run after {type(after).__name__}: {after})"
    marked = tracker.mark_failed(reason)
    steps = trainer.cfg.steps
    if isinstance(after, KeyboardInterrupt):  # Ctrl-C / SIGTERM; finished: it came at the end
        status = "FINISHED" if getattr(after, "finished", False) else "KILLED"
    else:
        status = "FINISHED" if trainer.step >= steps else "FAILED"
    (folder / "run.json").write_text(
        json.dumps(
            {
                "run_id": tracker.run_id,
                "experiment_id": tracker.experiment_id,
                "experiment_name": tracker.experiment_name,
                "tracking_uri": display_uri(tracker.tracking_uri),
                "status_on_server": "FAILED" if marked else "RUNNING (server unreachable)",
                "failure_reason": reason,
                "true_status": status,  # what pipeline sync ends the run with
                "step": trainer.step,
                "steps": steps,
                "checkpoint": checkpoint.name,
                "unsent_metric_rows": len(rows),
                "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            },
            indent=2,
        )
        + "\n"
    )

    state = "marked FAILED" if marked else "left RUNNING on the server"
    if after is not None:
        state = f"{state} after {type(after).__name__}: {after}"
    command = (
        f"pipeline train {config} --resume {checkpoint} "
        f"--tracking-uri {display_uri(tracker.tracking_uri)}"
    )
    if tracker.experiment_name and tracker.experiment_name != trainer.exp.name:
        command += f" --experiment-name {tracker.experiment_name}"
    if trainer.step < steps:
        todo = f"resume with: {command}"
    else:
        todo = f"training had finished; to train on: {command} -o train.steps=<more>"
    detail = (
        f"stopped at step {trainer.step} of {steps}; run {tracker.run_id} {state}; "
        f"checkpoint, samples, config and unsent metrics kept in {folder}/ (pipeline sync "
        f"sends them once the server is back); {todo}"
    )
    return TrackingUnavailable(tracker.tracking_uri, lost.reason, detail)
