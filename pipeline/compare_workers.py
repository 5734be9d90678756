"""``pipeline compare --workers N``: each variant's tuning and its seed re-trainings in N
worker processes, on the studies' Optuna storage (no scheduler of our own).

This process keeps the comparison's parent run and, variant after variant,

1. starts N ``pipeline compare … --worker '{"task": "tune", …}'`` processes on the
   variant's study, splitting what is left of its budget: the trials as ``pipeline tune
   --workers`` splits them (:func:`pipeline.tune_workers.split_trials`), the seconds
   (``budget.timeout_s`` counts the trials' summed durations) evenly; worker ``i`` seeds
   its sampler ``sampler_seed + i`` (samplers seeded alike would draw alike);
2. when all of them are done (the best setting is the whole study's), gives the seed
   re-trainings still to run (untuned and tuned setting × seeds) round-robin to N
   ``--worker '{"task": "seeds", …}'`` processes: the list is made here, once, so no two
   workers train the same seed.

Thread counts, Ctrl-C/SIGTERM forwarding and exit statuses are ``pipeline tune
--workers``'s (:mod:`pipeline.tune_workers`). With 1 worker the comparison tunes with the
sampler seed itself, so ``--workers 2`` samples other settings than ``--workers 1``: the
comparison is resumable with either, but not the same draw.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError, PipelineError
from pipeline.tune_workers import run_workers, split_trials, worker_env

if TYPE_CHECKING:
    from pipeline.compare import ComparisonRunner

#: a seed job as the main process hands it to a worker: which setting, which seed
DEFAULT_KIND, BEST_KIND = "default", "best"


class WorkerFailed(PipelineError):
    """A worker process of ``pipeline compare --workers`` exited with an error."""


@dataclass
class CompareWorkers:
    """Runs a comparison's phases in ``count`` worker processes of the same command
    (``base``: its arguments without ``--workers``)."""

    count: int
    base: list[str]
    echo: Callable[[str], None] = print

    def __post_init__(self) -> None:
        if self.count < 1:
            raise ConfigError("--workers", f"must be ≥ 1 (got {self.count})")

    def _run(self, tasks: list[dict[str, Any]]) -> None:
        commands = [
            [sys.executable, "-m", "pipeline.cli", *self.base, "--worker", json.dumps(task)]
            for task in tasks
        ]
        code, interrupted = run_workers(commands, worker_env(len(commands), 1), self.echo)
        if interrupted:
            raise KeyboardInterrupt
        if code != 0:
            raise WorkerFailed(f"a worker exited with status {code} (its output is above)")

    def tune(self, runner: ComparisonRunner, variant: str, folder: Path) -> None:
        left = runner.budget_left(runner.open_study(variant))
        if left is None:
            return
        n_left, t_left = left
        shares = split_trials(n_left, self.count)
        timeout = None if t_left is None else t_left / len(shares)
        self.echo(
            f"{variant}: {len(shares)} workers (trials each: "
            + (", ".join(str(s) for s in shares) if n_left is not None else "until the time")
            + ")"
        )
        self._run(
            [
                {"task": "tune", "variant": variant, "index": i, "trials": n, "timeout": timeout}
                for i, n in enumerate(shares)
            ]
        )

    def retrain(self, runner: ComparisonRunner, variant: str, folder: Path) -> None:
        study = runner.open_study(variant)
        jobs = [
            [DEFAULT_KIND if job.trial is None else BEST_KIND, job.seed]
            for job in runner.seed_jobs(variant, study)
        ]
        if not jobs:
            return
        per_worker = [jobs[i :: self.count] for i in range(min(self.count, len(jobs)))]
        self.echo(f"{variant}: {len(jobs)} seed re-trainings in {len(per_worker)} workers")
        self._run(
            [
                {"task": "seeds", "variant": variant, "index": i, "jobs": share}
                for i, share in enumerate(per_worker)
            ]
        )


def run_worker(runner: ComparisonRunner, task: dict[str, Any], folder: Path) -> None:
    """One worker's part (``--worker JSON``), under the comparison's existing parent run."""
    from pipeline.tracking import RunTracker, client_for

    run_id = runner.find_parent()
    if run_id is None:
        raise ConfigError("--worker", "the comparison has no parent run: start it without --worker")
    runner.parent = RunTracker(client_for(runner.tracking), run_id, runner.tracking.tracking_uri)
    variant = task["variant"]
    if variant not in runner.comparison.spec.variants:
        raise ConfigError("--worker", f"no variant {variant!r} in the comparison")
    if task["task"] == "tune":
        runner.tune(variant, folder, (task["trials"], task["timeout"]), seed_offset=task["index"])
        return
    probe = runner.tuner(variant, folder, 1, None)  # its space and registry; not joined
    study = runner.open_study(variant)
    wanted = {(kind, seed) for kind, seed in task["jobs"]}
    for job in runner.seed_jobs(variant, study):
        if (DEFAULT_KIND if job.trial is None else BEST_KIND, job.seed) in wanted:
            runner.train_seed(job, probe)
