"""Seeds per trial (``tune: {seeds: k}``): one trial's setting trained on k seeds in lockstep.

A setting picked on one seed too often does not hold on new ones (docs/results.md); Kurach
et al. 2019 ("A Large-Scale Study on Regularization and Normalization in GANs") train each
setting on 5 seeds, Lucic et al. 2018 re-run the best on many. Here a trial trains its
setting on seeds ``train.seed … train.seed + k - 1`` at once:

- the first seed is the trial's MLflow run, tracked as a single-seed trial is (checkpoint,
  samples, the figures and generator of the best trial); the others train untracked in
  threads beside it;
- at every evaluation the k trainings meet (a barrier): the trial's run records the mean of
  each metric under its own name (what the objective, the pruner, the sampler and the UI
  see), ``<metric>/seed_<s>`` for each seed and ``<metric>/se``, the standard error of the
  mean; then the first seed's callback decides (Optuna's pruner) and lets the others go on;
- a pruned, failed or interrupted trial stops every seed at once; a seed that fails fails
  the trial, naming the seed.

Threads, not processes: the k nets are small and torch releases the GIL inside its ops.
"""

from __future__ import annotations

import math
import signal
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import PipelineError
from pipeline.experiment.config import Experiment
from pipeline.host.blame import blame_plugins
from pipeline.training.interrupt import TrainingInterrupted
from pipeline.training.trainer import CombineEval, EvalCallback, Trainer, TrainResult


class SeedStopped(PipelineError):
    """A seed of a trial stopped because the trial ended (pruned, failed or interrupted)."""


def summarise(seeds: list[int], by_seed: list[dict[str, float]]) -> dict[str, float]:
    """The mean of each metric over ``seeds`` (under its own name), each seed's value as
    ``<metric>/seed_<s>`` and the standard error of the mean as ``<metric>/se``
    (sample standard deviation / √k; 0 for one seed)."""
    out: dict[str, float] = {}
    k = len(seeds)
    for name in by_seed[0]:
        values = [metrics[name] for metrics in by_seed]
        mean = sum(values) / k
        out[name] = mean
        spread = sum((v - mean) ** 2 for v in values) / (k - 1) if k > 1 else 0.0
        out[f"{name}/se"] = math.sqrt(spread / k) if math.isfinite(spread) else math.nan
        for seed, value in zip(seeds, values, strict=True):
            out[f"{name}/seed_{seed}"] = value
    return out


def per_seed(seeds: list[int], combined: dict[str, float]) -> dict[str, dict[str, float]]:
    """Each seed's metrics (by seed, as strings) back out of :func:`summarise`'s result."""
    return {
        str(seed): {
            name.rsplit("/seed_", 1)[0]: value
            for name, value in combined.items()
            if name.endswith(f"/seed_{seed}")
        }
        for seed in seeds
    }


class SeedGroup:
    """The k trainings of one trial: evaluations in lockstep, one stop for all."""

    def __init__(self, seeds: list[int]) -> None:
        if not seeds:
            raise ValueError("a seed group needs at least one seed")
        self.seeds = seeds
        self._reported = threading.Barrier(len(seeds))
        self._decided = threading.Barrier(len(seeds))
        self._lock = threading.Lock()
        self._pending: dict[int, list[dict[str, float] | None]] = {}
        self._combined: dict[int, dict[str, float]] = {}
        self._trainers: list[Trainer] = []
        #: the first failure of a seed other than the first, re-raised in the trial
        self.error: BaseException | None = None

    # -- evaluations ------------------------------------------------------------------
    def combine(self, index: int) -> CombineEval:
        """Seed ``index``'s ``combine_eval``: waits for every seed's evaluation of the step,
        then returns :func:`summarise` of them (the same dict for every seed)."""

        def combine(step: int, metrics: dict[str, float]) -> dict[str, float]:
            with self._lock:
                row = self._pending.setdefault(step, [None] * len(self.seeds))
                row[index] = metrics
            self._wait(self._reported)
            with self._lock:
                if step not in self._combined:
                    done = self._pending.pop(step)
                    self._combined[step] = summarise(self.seeds, [m or {} for m in done])
                return self._combined[step]

        return combine

    def decided(self, on_eval: EvalCallback | None) -> EvalCallback:
        """The first seed's ``on_eval``: the trial's callback (the pruner), then the others
        may go on; an exception from it stops them all."""

        def decide(step: int, metrics: dict[str, float]) -> None:
            if on_eval is not None:
                on_eval(step, metrics)
            self._wait(self._decided)
            with self._lock:
                self._combined.pop(step, None)

        return decide

    def _wait(self, barrier: threading.Barrier) -> None:
        try:
            barrier.wait()
        except threading.BrokenBarrierError:
            if self.error is not None:
                raise self.error from None
            raise SeedStopped("the trial stopped") from None

    # -- the other seeds ----------------------------------------------------------------
    def train(self, index: int, exp: Experiment) -> None:
        """Seed ``index`` (not the first), untracked: run in a thread of its own."""
        used = [choice.info for choice in exp.plugins.values()] + list(exp.metrics)
        try:
            with tempfile.TemporaryDirectory(prefix="gan-pipeline-seed-") as tmp:
                with blame_plugins(used):
                    trainer = Trainer(
                        exp,
                        workdir=Path(tmp),
                        progress=False,
                        write_artifacts=False,
                        trial=True,
                        combine_eval=self.combine(index),
                        on_eval=lambda step, metrics: self._wait(self._decided),
                    )
                with self._lock:
                    self._trainers.append(trainer)
                    stopped = self._reported.broken
                if stopped:
                    return
                with blame_plugins(used):
                    trainer.run()
        except (SeedStopped, TrainingInterrupted):
            return
        except BaseException as exc:
            with self._lock:
                if self.error is None:
                    self.error = _named(exc, self.seeds[index])
            self.stop()

    def start(self, experiments: list[Experiment]) -> list[threading.Thread]:
        """Threads for seeds 2..k (``experiments[i]`` trains ``seeds[i + 1]``), started."""
        threads = [
            threading.Thread(
                target=self.train, args=(i + 1, exp), name=f"seed-{self.seeds[i + 1]}", daemon=True
            )
            for i, exp in enumerate(experiments)
        ]
        for thread in threads:
            thread.start()
        return threads

    def stop(self) -> None:
        """End every seed: the barriers break and each training stops at its next step."""
        with self._lock:
            trainers = list(self._trainers)
        self._reported.abort()
        self._decided.abort()
        for trainer in trainers:
            trainer.stop.signum = signal.SIGTERM  # read between steps: stop without a trace


def _named(exc: BaseException, seed: int) -> BaseException:
    """``exc`` with the seed in front of its message, same type where that can be built."""
    try:
        return type(exc)(f"seed {seed}: {exc}")
    except Exception:
        return exc


def run_seed_group(
    group: SeedGroup,
    others: list[Experiment],
    first: Callable[[], object],
) -> object:
    """Start the other seeds, run ``first`` (the first seed's tracked training) in this
    thread, then stop and join them; a failure of another seed is raised here."""
    threads = group.start(others)
    try:
        result = first()
    finally:
        group.stop()
        for thread in threads:
            thread.join()
    if group.error is not None:
        raise group.error
    return result


class TrialSeeds:
    """The seeds of one tuning trial: ``k`` seeds from ``first``; one trains as a trial
    always has, several as a :class:`SeedGroup` (what :class:`pipeline.tuning.tuner.Tuner`
    wires into its trial)."""

    def __init__(self, first: int, k: int) -> None:
        self.seeds = [first + i for i in range(k)]
        self.group = SeedGroup(self.seeds) if k > 1 else None

    def on_eval(self, trial, value: Callable[[dict[str, float]], float], inner: EvalCallback):
        """The first seed's ``on_eval``: with several seeds, Optuna's trial first keeps each
        seed's metrics and objective (``seed_metrics``, ``seed_objectives``)."""
        if self.group is None:
            return inner

        def record(step: int, metrics: dict[str, float]) -> None:
            by_seed = per_seed(self.seeds, metrics)
            trial.set_user_attr("seed_metrics", by_seed)
            trial.set_user_attr("seed_objectives", {s: value(m) for s, m in by_seed.items()})
            inner(step, metrics)

        return self.group.decided(record)

    def combine_eval(self) -> CombineEval | None:
        return None if self.group is None else self.group.combine(0)

    def tags(self) -> dict[str, str]:
        return {} if self.group is None else {"trial.seeds": ",".join(map(str, self.seeds))}

    def run(
        self,
        trial,
        train: Callable[[], TrainResult],
        experiment_for: Callable[[int], Experiment],
    ) -> TrainResult:
        """``train`` (the first seed's tracked training) with the other seeds beside it."""
        if self.group is None:
            return train()
        trial.set_user_attr("seeds", self.seeds)
        others = [experiment_for(seed) for seed in self.seeds[1:]]
        result = run_seed_group(self.group, others, train)
        assert isinstance(result, TrainResult)
        return result
