"""Each population member's MLflow child run: what a tuning trial's run holds.

The same record as ``run_training(trial=True)`` (:mod:`pipeline.training.trial_record`): tags
(plugins and their packages, ``optuna.*``, ``pipeline.record = trial``, ``population.size``),
params (the resolved config and ``trial.*``), ``config.yaml`` at the start; per-step
values as window means, gradient norms and σ estimates on log steps, evaluation metrics
and ``samples/step_NNNNNNN.npy`` as they come, sent every
:data:`~pipeline.training.trial_record.TRIAL_SEND_INTERVAL_S` seconds; at the end ``samples.npy``,
the per-step CSV, ``checkpoint/checkpoint.pt`` (its own weights, copied out of the
stack), ``wall_time_s`` and ``steps_per_s``. A finished member ends FINISHED, a pruned one
KILLED, a non-finite one FAILED with the reason.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from torch import Tensor

from pipeline.tracking.client import RunTracker, TrackingSettings
from pipeline.training.run import run_tags
from pipeline.training.trainer import TrainResult
from pipeline.training.trial_record import (
    RECORD_TAG,
    TRIAL_SEND_INTERVAL_S,
    figure_samples,
    sample_name,
    window_means,
    write_per_step_csv,
)
from pipeline.tuning.population.trainer import Member, PopulationTrainer

__all__ = ["MemberRun"]


@dataclass
class MemberRun:
    """One member's run: its tracker (None: untracked), work folder and unsent rows."""

    tracker: RunTracker | None
    workdir: tempfile.TemporaryDirectory = field(
        default_factory=lambda: tempfile.TemporaryDirectory(prefix="gan-member-")
    )
    unsent: list[tuple[str, float, int]] = field(default_factory=list)
    last_send: float = field(default_factory=time.perf_counter)
    last_samples: Tensor | None = None

    @property
    def path(self) -> Path:
        return Path(self.workdir.name)

    @classmethod
    def start(
        cls,
        tracking: TrackingSettings | None,
        experiment_name: str,
        member: Member,
        *,
        device: Any,
        run_name: str,
        parent_run_id: str | None,
        tags: dict[str, str],
        params: dict[str, Any],
    ) -> MemberRun:
        if tracking is None:
            return cls(None)
        tracker = RunTracker.start(
            tracking,
            experiment_name,
            run_name=run_name,
            tags=run_tags(member.exp, device) | tags | {RECORD_TAG: "trial"},
            parent_run_id=parent_run_id,
        )
        run = cls(tracker)
        tracker.log_params(member.exp.flat_params() | params)
        config = run.path / "config.yaml"
        config.write_text(yaml.safe_dump(member.exp.resolved, sort_keys=False))
        tracker.log_artifact(config)
        return run

    # -- during the run -------------------------------------------------------------------
    def window(self, keys: list[str], table: np.ndarray, steps: list[int]) -> None:
        if self.tracker:
            self.unsent.extend(window_means(keys, table, steps))
            self.tracker.check()  # a server found gone in the background stops the tune
            self.send()

    def extras(self, step: int, values: dict[str, float]) -> None:
        if self.tracker:
            self.unsent.extend((k, v, step) for k, v in values.items())

    def evaluation(self, member: Member, metrics: dict[str, float], samples: Tensor) -> None:
        self.last_samples = samples
        if not self.tracker:
            return
        self.unsent.extend((k, v, member.step) for k, v in metrics.items())
        shown = figure_samples(member.single.dataset, samples)
        if shown is not None:
            path = self.path / "samples" / sample_name(member.step, ".npy")
            path.parent.mkdir(parents=True, exist_ok=True)
            np.save(path, shown, allow_pickle=False)
            self.tracker.submit(self.tracker.log_artifact, path, "samples")
        self.send()

    def send(self, force: bool = False) -> None:
        assert self.tracker is not None
        now = time.perf_counter()
        if self.unsent and (force or now - self.last_send >= TRIAL_SEND_INTERVAL_S):
            rows, self.unsent = self.unsent, []
            self.last_send = now
            self.tracker.submit(self.tracker.log_metrics, rows)

    # -- the end ----------------------------------------------------------------------------
    def finish(
        self,
        trainer: PopulationTrainer,
        k: int,
        member: Member,
        result: TrainResult | None,
        status: str,
        reason: str | None = None,
    ) -> None:
        """The run's last files (a finished member) and its status; frees the folder."""
        try:
            if self.tracker is None:
                return
            self.send(force=True)
            if result is not None:
                self._last_files(trainer, k, member, result)
            self.tracker.finish(status, reason)
        finally:
            self.workdir.cleanup()

    def _last_files(
        self, trainer: PopulationTrainer, k: int, member: Member, result: TrainResult
    ) -> None:
        assert self.tracker is not None
        t, wd = self.tracker, self.path
        if self.last_samples is not None and not member.single.dataset.is_image:
            np.save(wd / "samples.npy", self.last_samples.numpy())
        per_step = write_per_step_csv(wd, member.history)
        single = trainer.store_member(k, member)
        checkpoint = single.save_checkpoint(wd / "checkpoint.pt")
        t.drain()
        wall = result.wall_time_s
        t.log_metrics(
            [
                ("wall_time_s", wall, member.step),
                ("steps_per_s", member.step / max(wall, 1e-9), member.step),
            ]
        )
        if (wd / "samples.npy").exists():
            t.log_artifact(wd / "samples.npy")
        t.log_artifact(per_step)
        t.log_artifact(checkpoint, "checkpoint")
