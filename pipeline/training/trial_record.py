"""What a tuning trial records while it runs, and what its run gets once it is the best.

A ``pipeline train`` run records everything as it goes (README, "What a run records").
A tuning trial (``run_training(..., trial=True)``, as ``pipeline tune`` calls it) records
only what the search and its live view need, because tuning's budget is trials per hour
and on 2 cores whatever tracking does during a trial comes out of its training steps
(issue 14: 1.24× the untracked trial). Measured here per 800-step trial (3×128 nets, four
evaluations): MLflow's SQLite store costs ~0.13 ms of CPU per metric row whatever the
batch size (its ORM inserts and latest-metric updates), so 4 per-step values of 800 steps
cost ~0.45 s; each sample scatter 0.1 s; the loss curves 0.35–0.47 s; the generator as
an MLflow model 0.18 s (0.85–4 s for the first of a process). Done on a background thread
it costs more still: torch's two threads stall whenever another thread of the process
takes a core.

While a trial runs:

- per-step values (``loss/critic``, ``loss/generator``, ``penalty``,
  ``wasserstein_estimate``) go to MLflow as their **mean over each** ``train.log_every``
  **window**, at the window's last step (25 rows per key instead of 800 at the defaults);
  gradient norms, σ estimates and evaluation metrics as in a train run (they are measured
  once per window or evaluation anyway);
- they reach the store every :data:`TRIAL_SEND_INTERVAL_S` seconds, in one batch: the
  MLflow UI shows a running trial's metrics at most that long plus one ``log_every``
  window late;
- nothing is drawn: each evaluation's samples (:func:`figure_samples`: what its figure
  would show) are logged as ``samples/step_NNNNNNN.npy`` (~1 ms), so a pruned trial has
  them too.

At its end a trial logs, like a train run, ``config.yaml`` (at its start), ``samples.npy``,
``checkpoint/checkpoint.pt``, ``wall_time_s`` and ``steps_per_s``; plus every value of
every step as :data:`PER_STEP_CSV` (``key,step,value``). It is tagged
``pipeline.record = trial``.

:func:`complete_trial_run` adds what a train run has and a trial lacks — the sample figures
``samples/step_NNNNNNN.png``, ``loss_curves.png``, ``progression.gif`` for images, and the
generator as an MLflow model — drawn from those files and rebuilt from the checkpoint, and
tags the run ``pipeline.completed = true``. ``pipeline tune`` calls it for the study's best
trial when it ends; ``pipeline best`` for the best trial whenever it lacks them (a tune that
was interrupted, or is still running). It works on any finished trial's run.
"""

from __future__ import annotations

import csv
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

    from pipeline.host.registry import Registry
    from pipeline.tracking.client import TrackingSettings
    from pipeline.types import Dataset

#: seconds between two sends of a trial's metrics: one ``log_batch`` costs ~7 ms of CPU on
#: SQLite even for a few rows, and every 10 s that is 0.07 % of a trial; the live view lags
#: by at most this plus one ``log_every`` window
TRIAL_SEND_INTERVAL_S = 10.0
#: tag naming what kind of record a run holds (``trial``; absent on train runs)
RECORD_TAG = "pipeline.record"
#: tag set once :func:`complete_trial_run` has added the figures and the generator
COMPLETED_TAG = "pipeline.completed"
#: a trial's per-step values, long format: ``key,step,value``
PER_STEP_CSV = "per_step_metrics.csv"
#: the figures of an evaluation show at most this many images (an 8×8 grid)
GRID_IMAGES = 64


def window_means(
    keys: list[str], table: np.ndarray, steps: list[int]
) -> list[tuple[str, float, int]]:
    """One row per key: the mean of its column of ``table`` (a window of steps, one row
    each) at the window's last step. ``table``'s columns are ``keys``."""
    last = steps[-1]
    return [
        (key, float(np.mean(table[:, c], dtype=np.float64)), last) for c, key in enumerate(keys)
    ]


def figure_samples(dataset: Dataset, samples: Tensor) -> np.ndarray | None:
    """The part of an evaluation's samples its figure shows, as an array of its own:
    the first 64 images (the grid), every 2-D sample, or None (no figure for other data)."""
    if dataset.is_image:
        return samples[:GRID_IMAGES].numpy().copy()  # not a view that keeps all samples alive
    if samples.ndim == 2 and samples.shape[1] == 2:
        return samples.numpy().copy()
    return None


def sample_figure(
    dataset: Dataset, shown: np.ndarray, path: Path, title: str
) -> tuple[Callable[..., Path], tuple[Any, ...], dict[str, Any]]:
    """The plot function and arguments that draw an evaluation's figure: an image grid, or
    a scatter over 1,000 real samples (a fixed seed: every figure shows the same ones), the
    mode centres and their 3σ circles. Computed by the caller, drawn by whoever calls it."""
    import torch

    from pipeline.training import plots

    if dataset.is_image:
        return plots.image_grid, (shown, path), {"nrow": 8, "title": title}
    real = dataset.sample(1000, torch.Generator().manual_seed(0)).numpy()
    centers = None if dataset.centers is None else dataset.centers.numpy()
    kwargs = {"centers": centers, "std": dataset.std, "real": real, "title": title}
    return plots.scatter_plot, (shown, path), kwargs


def sample_title(name: str, step: int, metrics: dict[str, float] | None = None) -> str:
    """A sample figure's title: the experiment and step, and the evaluation's metrics
    on a line of their own (``25 modes · 87.6 % HQ · rKL 0.0077``)."""
    line = metrics_line(metrics or {})
    return f"{name} · step {step}" + (f"\n{line}" if line else "")


#: how a figure's title writes a metric (the rest: ``name value`` to 3 significant digits)
_SHOWN = {
    "modes": lambda v: f"{v:.3g} modes",
    "hq_fraction": lambda v: f"{100 * v:.1f} % HQ",
    "reverse_kl": lambda v: f"rKL {v:.2g}",
    "w1": lambda v: f"W1 {v:.3g}",
}


def metrics_line(metrics: dict[str, float], most: int = 4) -> str:
    """Up to ``most`` metrics for a title, the mode-coverage ones first."""
    keys = [k for k in _SHOWN if k in metrics] + [k for k in metrics if k not in _SHOWN]
    shown = [_SHOWN[k](metrics[k]) if k in _SHOWN else f"{k} {metrics[k]:.3g}" for k in keys]
    return " · ".join(shown[:most])


def sample_name(step: int, suffix: str) -> str:
    return f"step_{step:07d}{suffix}"


def write_per_step_csv(workdir: Path, history: dict[str, tuple[list[int], list[float]]]) -> Path:
    """Write every value of every step as :data:`PER_STEP_CSV` into ``workdir`` (floats
    with ``repr``: they read back exactly)."""
    csv_path = workdir / PER_STEP_CSV
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("key", "step", "value"))
        for key, (steps, values) in history.items():
            writer.writerows((key, s, repr(v)) for s, v in zip(steps, values, strict=True))
    return csv_path


def read_per_step_csv(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """:data:`PER_STEP_CSV` back as ``{key: (steps, values)}`` in logged order."""
    columns: dict[str, tuple[list[int], list[float]]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            steps, values = columns.setdefault(row["key"], ([], []))
            steps.append(int(row["step"]))
            values.append(float(row["value"]))
    return {k: (np.asarray(s), np.asarray(v)) for k, (s, v) in columns.items()}


@contextmanager
def quiet_downloads() -> Iterator[None]:
    """No MLflow progress bar per downloaded file on the user's terminal (MLflow reads the
    variable at each download; the caller is the only thread logging at that point)."""
    name = "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"
    previous = os.environ.get(name)
    os.environ[name] = "false"
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def has_generator(tags: dict[str, str]) -> bool:
    """Whether a run with these tags holds the generator model: a train run (and a trial of
    an older version) logs it itself, a trial once :func:`complete_trial_run` did."""
    return tags.get(RECORD_TAG) != "trial" or bool(tags.get(COMPLETED_TAG))


def complete_trial_run(
    tracking: TrackingSettings, run_id: str, registry: Registry | None = None
) -> bool:
    """Add a finished trial's figures and generator model to its run (see the module doc).

    Returns False, changing nothing, for a run that needs nothing: not a trial's
    (``pipeline.record`` is not ``trial``), already completed, or not FINISHED (a pruned,
    failed or running trial has no final checkpoint). Raises ``PipelineError`` subclasses
    naming what is missing (a checkpoint that does not load, a plugin no longer installed).
    ``registry`` (default: :func:`pipeline.host.registry.default_registry`) rebuilds the
    experiment from the config in the checkpoint.
    """
    from pipeline.tracking.client import RunTracker, client_for

    client = client_for(tracking)
    run = client.get_run(run_id)
    if has_generator(run.data.tags) or run.info.status != "FINISHED":
        return False  # before torch and the plots are imported: `pipeline best` stays quick
    from pipeline.experiment.config import validate
    from pipeline.training import plots
    from pipeline.training.checkpoint import load_checkpoint
    from pipeline.training.generator_average import generator_average

    if registry is None:
        from pipeline.host.registry import default_registry

        registry = default_registry()
    with tempfile.TemporaryDirectory(prefix="gan-pipeline-complete-") as tmp, quiet_downloads():
        root = Path(tmp)
        ckpt = client.download_artifacts(run_id, "checkpoint/checkpoint.pt", str(root / "in"))
        state = load_checkpoint(ckpt, shown_as=f"runs:/{run_id}/checkpoint/checkpoint.pt")
        exp = validate(state["config"], registry)
        dataset = exp.plugins["dataset"].instantiate()
        pair = exp.plugins["model"].instantiate().build(tuple(dataset.shape))
        pair.generator.load_state_dict(state["generator"])
        generator = pair.generator
        if "generator_ema" in state:  # train.g_ema: the average is what the run evaluated
            average = generator_average(pair.generator, exp.train.g_ema)
            assert average is not None
            average.load_state_dict(state["generator_ema"])
            generator = average.module

        out = root / "out"
        names = {a.path for a in client.list_artifacts(run_id, "samples")}
        at_step: dict[int, dict[str, float]] = {}  # each evaluation's metrics, for the titles
        for m in exp.metrics:
            for point in client.get_metric_history(run_id, m.name):
                at_step.setdefault(point.step, {})[m.name] = point.value
        grids: list[tuple[int, np.ndarray]] = []
        for name in sorted(n for n in names if n.endswith(".npy")):
            step = int(Path(name).stem.removeprefix("step_"))
            local = client.download_artifacts(run_id, name, str(root / "in"))
            shown = np.load(local, allow_pickle=False)
            if dataset.is_image:
                grids.append((step, shown))
            png = out / "samples" / sample_name(step, ".png")
            title = sample_title(exp.name, step, at_step.get(step))
            plot, args, kwargs = sample_figure(dataset, shown, png, title)
            plot(*args, **kwargs)
        if grids:
            plots.animate_grids(
                [g for _, g in grids],
                out / "progression.gif",
                labels=[f"step {s}" for s, _ in grids],
            )
        per_step = client.download_artifacts(run_id, PER_STEP_CSV, str(root / "in"))
        plots.loss_curves(
            read_per_step_csv(Path(per_step)), out / "loss_curves.png", title=exp.name
        )

        tracker = RunTracker(client, run_id, tracking.tracking_uri)
        if (out / "samples").is_dir():
            client.log_artifacts(run_id, str(out / "samples"), "samples")
        for name in ("loss_curves.png", "progression.gif"):
            if (out / name).exists():
                tracker.log_artifact(out / name)
        tracker.log_generator(generator, pair.noise_dim)
        tracker.set_tags({COMPLETED_TAG: "true"})
    return True
