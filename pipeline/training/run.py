"""One training as one MLflow run: start it, train, end it with the status that says how.

The loop itself is :class:`pipeline.training.trainer.Trainer`'s; this module owns the run around
it: tags and params, plugin blame, SIGTERM/Ctrl-C, a tracking server that goes away.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pipeline.experiment.config import Experiment
from pipeline.host.blame import blame_plugins
from pipeline.tracking.client import ROLE_TAG, RunTracker, TrackingSettings, TrackingUnavailable
from pipeline.training.dead_runs import end_dead_runs_quietly, process_tag
from pipeline.training.interrupt import TrainingInterrupted, stop_on_signals
from pipeline.training.trainer import CombineEval, EvalCallback, Trainer, TrainResult
from pipeline.training.trial_record import RECORD_TAG
from pipeline.training.unsent import keep_unsent

__all__ = ["TrainResult", "run_tags", "run_training"]


def run_tags(exp: Experiment, device: torch.device) -> dict[str, str]:
    """Plugin names and the package + version each comes from, as MLflow tags."""
    import pipeline

    tags = {
        "pipeline.version": pipeline.__version__,
        "torch.version": torch.__version__,
        "device": str(device),
    }
    for section, choice in exp.plugins.items():
        tags[f"plugin.{section}"] = choice.info.name
        tags[f"plugin.{section}.package"] = choice.info.origin
    for m in exp.metrics:
        tags[f"plugin.metric.{m.name}.package"] = m.origin
    return tags


def run_training(
    exp: Experiment,
    *,
    tracking: TrackingSettings | None,
    device: str | None = None,
    progress: bool = True,
    on_eval: EvalCallback | None = None,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
    extra_params: dict[str, Any] | None = None,
    run_name: str | None = None,
    status_for: Callable[[BaseException], str | None] | None = None,
    on_run_started: Callable[[str], None] | None = None,
    resume_state: dict[str, Any] | None = None,
    trial: bool = False,
    combine_eval: CombineEval | None = None,
) -> TrainResult:
    """Train one experiment as one MLflow run (or untracked with ``tracking=None``).

    ``trial=True`` records it as a tuning trial (:mod:`pipeline.training.trial_record`): per-step
    metrics as window means sent every 10 s, evaluation samples instead of figures, no
    generator model; :func:`pipeline.training.trial_record.complete_trial_run` adds those later.

    ``resume_state`` (a checkpoint checked with
    :func:`pipeline.training.resume.check_resumable`) continues a
    run from its step, nets, optimizers and RNG states, as a new MLflow run.

    ``combine_eval`` turns each evaluation's metrics into what the run records, the
    callbacks see and the result holds (seeds per trial: :mod:`pipeline.tuning.trial_seeds`).

    The run ends FINISHED on success, FAILED on an exception or a non-finite loss (the
    reason as the ``failure_reason`` tag), KILLED on Ctrl-C or SIGTERM: in the main
    thread the first one stops the loop at the next step boundary, logs the checkpoint
    of that step and raises :class:`TrainingInterrupted`; a second one stops at once
    (``KeyboardInterrupt``). ``status_for``
    lets a caller map its own exceptions (a pruned trial) to a status.

    When the tracking server goes away, training stops at the next flush and
    :func:`pipeline.training.unsent.keep_unsent` keeps the checkpoint, samples, config and unsent
    metrics in ``<unsent_dir>/<run_id>/`` (the temp folder is deleted on exit) and raises
    :class:`TrackingUnavailable` naming that folder.
    """
    # an exception from plugin code becomes a PluginRuntimeError naming the plugin
    used = [choice.info for choice in exp.plugins.values()] + list(exp.metrics)
    with tempfile.TemporaryDirectory(prefix="gan-pipeline-") as tmp:
        with blame_plugins(used):
            trainer = Trainer(
                exp,
                device=device,
                workdir=Path(tmp),
                progress=progress,
                on_eval=on_eval,
                write_artifacts=tracking is not None,
                trial=trial,
                combine_eval=combine_eval,
            )
            if resume_state is not None:
                trainer.restore(resume_state)
        tracker = None
        if tracking is not None:
            experiment_name = tracking.experiment_name or exp.name
            role = {ROLE_TAG: "trial" if trial else "train"}
            tags = run_tags(exp, trainer.device) | role | (extra_tags or {})
            tags |= process_tag()  # a later run ends this one if its process dies
            if trial:
                tags[RECORD_TAG] = "trial"
            else:
                end_dead_runs_quietly(tracking, experiment_name)
            tracker = RunTracker.start(
                tracking,
                experiment_name,
                run_name=run_name,
                tags=tags,
                parent_run_id=parent_run_id,
            )
        try:  # from the moment the run exists: a Ctrl-C from here on ends it KILLED
            if tracker:
                trainer.tracker = tracker
                if on_run_started:
                    on_run_started(tracker.run_id)
                tracker.log_params(exp.flat_params() | (extra_params or {}))
            with stop_on_signals(trainer.stop), blame_plugins(used):
                result = trainer.run()
            if tracker:
                tracker.finish("FINISHED")
        except KeyboardInterrupt as exc:
            # TrainingInterrupted: stopped at a step boundary, its checkpoint logged
            if tracker:
                reason = str(exc) if isinstance(exc, TrainingInterrupted) else None
                if not isinstance(exc, TrainingInterrupted):  # a second Ctrl-C: at once
                    exc.run_id = tracker.run_id  # type: ignore[attr-defined]  (for the CLI)
                try:
                    tracker.finish("KILLED", reason or "interrupted (Ctrl-C or SIGTERM)")
                except TrackingUnavailable as lost:
                    assert tracking is not None
                    raise keep_unsent(trainer, tracker, lost, tracking, after=exc) from exc
            raise
        except TrackingUnavailable as lost:
            # the server went away: what the run made stays on local disk, named in the error
            assert tracker is not None and tracking is not None
            raise keep_unsent(trainer, tracker, lost, tracking) from lost
        except BaseException as exc:
            if tracker:
                status = status_for(exc) if status_for else None
                try:
                    if status:
                        tracker.finish(status)
                    else:
                        tracker.finish("FAILED", f"{type(exc).__name__}: {exc}")
                except TrackingUnavailable as lost:
                    assert tracking is not None
                    raise keep_unsent(trainer, tracker, lost, tracking, after=exc) from exc
            raise
        if trainer.stop.requested:
            # the signal came while the finished run logged its last files: the run is
            # complete, and the caller (a tune between trials) still hears the signal
            assert trainer.stop.signum is not None
            raise TrainingInterrupted(
                trainer.stop.signum, trainer.step, result.run_id, finished=True
            )
        return result
