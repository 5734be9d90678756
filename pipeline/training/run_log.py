"""What a training records: per-step values, evaluations, sample figures, the run's files.

:class:`RunLog` keeps the per-step history, sends metric rows to the MLflow run at most
every :data:`SEND_INTERVAL_S` seconds (a tuning trial's: window means, every
:data:`pipeline.training.trial_record.TRIAL_SEND_INTERVAL_S`), draws or keeps each evaluation's
samples, and writes and logs ``config.yaml`` at the start and the run's last files at the
end. It never trains; :class:`pipeline.training.trainer.Trainer` hands it host values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from pipeline.training import plots
from pipeline.training import trial_record as record
from pipeline.training.checkpoint import save_checkpoint

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from pipeline.experiment.config import Experiment
    from pipeline.tracking.client import RunTracker
    from pipeline.types import Dataset

#: seconds between two MLflow writes of per-step metrics in a train run (the UI lags by at
#: most this); a tuning trial's is :data:`pipeline.training.trial_record.TRIAL_SEND_INTERVAL_S`
SEND_INTERVAL_S = 2.0

#: one metric row: (key, value, step)
Row = tuple[str, float, int]


@dataclass(frozen=True)
class RunEnd:
    """What a finished training hands :meth:`RunLog.end`: values and nets, not the trainer."""

    step: int
    #: the last evaluation's samples
    samples: Tensor
    wall_s: float
    #: :meth:`pipeline.training.trainer.Trainer.checkpoint_state` of the last step
    checkpoint: dict[str, Any]
    #: what was evaluated and sampled: the generator, or its average (``train.g_ema``)
    generator: nn.Module
    noise_dim: int
    device: torch.device
    is_image: bool


class RunLog:
    """The records of one training, in ``workdir`` and (when tracked) its MLflow run."""

    def __init__(self, exp: Experiment, workdir: Path, *, trial: bool) -> None:
        self.exp = exp
        self.workdir = workdir
        #: record as a tuning trial (see :mod:`pipeline.training.trial_record`): window means, no
        #: figures and no generator model during the run
        self.trial = trial
        #: the MLflow run, set once it is started (``None``: untracked)
        self.tracker: RunTracker | None = None
        self.send_interval_s = record.TRIAL_SEND_INTERVAL_S if trial else SEND_INTERVAL_S
        #: per-step values by metric name: (steps, values)
        self.history: dict[str, tuple[list[int], list[float]]] = {}
        #: the image grid of each evaluation, for the animated progression at the end
        self.grid_frames: list[tuple[int, np.ndarray]] = []
        #: rows not yet handed to the tracker
        self.unsent: list[Row] = []
        self._last_send = time.perf_counter()

    # -- metrics ----------------------------------------------------------------------
    def steps(self, keys: list[str], table: np.ndarray, steps: list[int], extra: list[Row]) -> None:
        """Record a window of finite per-step values: ``table`` has a row per step of
        ``steps`` and a column per key; ``extra`` rows (gradient norms, diagnostics)
        are kept as they are."""
        rows = [
            (key, float(table[r, c]), step)
            for r, step in enumerate(steps)
            for c, key in enumerate(keys)
        ]
        for key, value, step in rows + extra:
            history_steps, values = self.history.setdefault(key, ([], []))
            history_steps.append(step)
            values.append(value)
        if self.tracker:
            if self.trial:  # the window's mean per key: MLflow's store costs per row
                rows = record.window_means(keys, table, steps)
            self.unsent.extend(rows + extra)
            self.tracker.check()  # a server found gone in the background stops the run here
            self.send()

    def evaluation(self, step: int, metrics: dict[str, float]) -> None:
        """An evaluation's metrics: a train run sends them now; a trial with its next batch."""
        if self.tracker:
            self.unsent.extend((k, v, step) for k, v in metrics.items())
            self.send(force=not self.trial)

    def send(self, force: bool = False) -> None:
        """Hand buffered rows to the tracker at most every ``send_interval_s`` seconds: one
        MLflow ``log_batch`` costs ~7 ms on SQLite plus ~0.13 ms per row."""
        now = time.perf_counter()
        if not self.tracker or not self.unsent:
            return
        if force or now - self._last_send >= self.send_interval_s:
            rows, self.unsent = self.unsent, []
            self._last_send = now
            self.tracker.submit(self.tracker.log_metrics, rows)

    @contextmanager
    def sent_at_exit(self) -> Iterator[None]:
        """Whatever ends the loop (the last step, a non-finite loss, a pruned trial), the
        buffered per-step metrics reach the tracker."""
        try:
            yield
        finally:
            self.send(force=True)

    # -- evaluation samples -----------------------------------------------------------
    def samples(
        self,
        dataset: Dataset,
        samples: Tensor,
        step: int,
        metrics: dict[str, float] | None = None,
    ) -> None:
        """An evaluation's samples: drawn (``metrics`` in the title) and logged (a trial
        keeps them as ``.npy``)."""
        shown = record.figure_samples(dataset, samples)
        if shown is None:
            return
        path = self.workdir / "samples" / record.sample_name(step, ".png")
        if self.trial:  # drawn later, for the best trial (trial_record.complete_trial_run)
            self._keep_samples(shown, path.with_suffix(".npy"))
            return
        if dataset.is_image:
            self.grid_frames.append((step, shown))
        plot, args, kwargs = record.sample_figure(
            dataset, shown, path, record.sample_title(self.exp.name, step, metrics)
        )
        self._draw(plot, *args, **kwargs)

    def _keep_samples(self, shown: np.ndarray, path: Path) -> None:
        """A trial's evaluation samples, logged as they come (a pruned trial has them too)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, shown, allow_pickle=False)
        if self.tracker:
            self.tracker.submit(self.tracker.log_artifact, path, "samples")

    def _draw(self, plot: Callable[..., Path], *args: Any, **kwargs: Any) -> None:
        """Draw a sample plot and log it; on the tracker's background thread when tracked."""

        def job() -> None:
            path = plot(*args, **kwargs)
            if self.tracker:
                self.tracker.log_artifact(path, "samples")

        if self.tracker:
            self.tracker.submit(job)
        else:
            job()

    # -- the run's files ----------------------------------------------------------------
    def start(self) -> None:
        config_path = self.workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(self.exp.resolved, sort_keys=False))
        if self.tracker:
            self.tracker.log_artifact(config_path)

    def end(self, run: RunEnd) -> None:
        """The run's last files. A trial writes its per-step values and evaluation samples
        instead of figures and the generator model (see :mod:`pipeline.training.trial_record`)."""
        wd, is_image, wall = self.workdir, run.is_image, run.wall_s
        if not is_image:
            np.save(wd / "samples.npy", run.samples.numpy())
        elif self.grid_frames:
            plots.animate_grids(
                [grid for _, grid in self.grid_frames],
                wd / "progression.gif",
                labels=[f"step {step}" for step, _ in self.grid_frames],
            )
        if self.trial:
            per_step = record.write_per_step_csv(wd, self.history)
        else:
            plots.loss_curves(
                {k: (np.asarray(s), np.asarray(v)) for k, (s, v) in self.history.items()},
                wd / "loss_curves.png",
                title=self.exp.name,
            )
        ckpt = save_checkpoint(wd / "checkpoint.pt", run.checkpoint)
        if not self.tracker:
            return
        t, step = self.tracker, run.step
        t.drain()  # every metric batch and sample plot is in before the run's last files
        t.log_metrics([("wall_time_s", wall, step), ("steps_per_s", step / max(wall, 1e-9), step)])
        if not is_image:
            t.log_artifact(wd / "samples.npy")
        elif (wd / "progression.gif").exists():
            t.log_artifact(wd / "progression.gif")
        if self.trial:
            t.log_artifact(per_step)
            t.log_artifact(ckpt, "checkpoint")
            return
        t.log_artifact(wd / "loss_curves.png")
        t.log_artifact(ckpt, "checkpoint")
        # the average when there is one (train.g_ema): what was evaluated and sampled
        t.log_generator(run.generator.cpu(), run.noise_dim)
        run.generator.to(run.device)


@contextmanager
def progress_bar(total: int, enabled: bool, name: str, initial: int = 0) -> Iterator[Any]:
    """A tqdm bar over the generator steps (``None`` when ``enabled`` is false)."""
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=name, unit="step", dynamic_ncols=True, leave=True)
    try:
        yield bar
    finally:
        bar.close()
