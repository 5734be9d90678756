"""``pipeline compare --workers N``: each variant's tuning and its seed re-trainings in N
worker processes, on the studies' Optuna storage (no scheduler of our own).

This process keeps the comparison's parent run and, variant after variant,

1. starts N ``pipeline compare … --worker '{"task": "tune", …}'`` processes on the
   variant's study, splitting what is left of its budget: the trials as ``pipeline tune
   --workers`` splits them (:func:`pipeline.tuning.workers.split_trials`), the seconds
   (``budget.timeout_s`` counts the trials' summed durations) evenly; worker ``i`` seeds
   its sampler ``sampler_seed + i`` (samplers seeded alike would draw alike);
2. when all of them are done (the best setting is the whole study's), gives the seed
   re-trainings still to run (untuned and tuned setting × seeds) round-robin to N
   ``--worker '{"task": "seeds", …}'`` processes: the list is made here, once, so no two
   workers train the same seed.

Thread counts, Ctrl-C/SIGTERM forwarding and exit statuses are ``pipeline tune
--workers``'s (:mod:`pipeline.tuning.workers`). With 1 worker the comparison tunes with the
sampler seed itself, so ``--workers 2`` samples other settings than ``--workers 1``: the
comparison is resumable with either, but not the same draw.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pipeline.errors import ConfigError, PipelineError
from pipeline.tuning.workers import run_workers, split_trials, worker_env

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

    def tune(self, variant: str, left: tuple[int | None, float | None] | None) -> None:
        """Tune ``variant`` in the workers with ``left`` of its budget (trials, seconds;
        None: spent): :meth:`pipeline.compare.runner.ComparisonRunner.budget_left`."""
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

    def retrain(self, variant: str, jobs: list[tuple[str, int]]) -> None:
        """Give ``variant``'s seed re-trainings, ``(DEFAULT_KIND or BEST_KIND, seed)`` each,
        round-robin to the workers."""
        if not jobs:
            return
        per_worker = [jobs[i :: self.count] for i in range(min(self.count, len(jobs)))]
        self.echo(f"{variant}: {len(jobs)} seed re-trainings in {len(per_worker)} workers")
        self._run(
            [
                {"task": "seeds", "variant": variant, "index": i, "jobs": [list(j) for j in share]}
                for i, share in enumerate(per_worker)
            ]
        )
