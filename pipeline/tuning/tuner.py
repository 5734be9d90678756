"""``pipeline tune``: Optuna searches the ``tune:`` space; every trial is a nested MLflow run.

- One Optuna study per experiment (default name: the experiment's), in any Optuna
  storage. The embedded default is Optuna's **journal file** (``optuna.journal`` beside
  the MLflow SQLite store): several local worker processes append to it under a file
  lock without SQLite's "database is locked" failures, and ``optuna`` CLI reads it.
  ``--storage postgresql://…`` (or ``redis://…``) gives Optuna's own distributed mode.
- One MLflow **parent run per study**; its id is kept in the study's user attributes so a
  resumed study, or another worker joining it, logs under the same parent. Each trial is a
  child run with ``mlflow.parentRunId`` set explicitly (optuna-integration's deprecated
  ``MLflowCallback`` loses that link with ``n_jobs > 1``).
- Pruning: the objective metric is reported at every evaluation; a pruned trial stops at
  once, is PRUNED in Optuna and KILLED in MLflow (not FAILED), with the step it reached.

Samplers and pruners by name: :mod:`pipeline.tuning.factories`; the lines it prints and the
study's artifacts: :mod:`pipeline.tuning.report`; ``pipeline best``: :mod:`pipeline.tuning.best`.

- A trial records what the search and the live view need (``run_training(trial=True)``,
  :mod:`pipeline.training.trial_record`): per-step metrics as window means, sent every 10 s;
  evaluation samples, not figures; no generator model. When the search ends, the study's
  best trial gets its figures and generator (:func:`pipeline.tuning.best_mark.complete_best`);
  ``pipeline best`` does the same for a best trial that lacks them. A storage whose server
  stops answering ends the tune in one line (:mod:`pipeline.stores.storage_loss`).
"""

from __future__ import annotations

import json
import math
import tempfile
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import yaml

from pipeline.errors import ConfigError, NonFiniteLossError, one_line
from pipeline.experiment.config import apply_overrides, load_yaml, validate
from pipeline.experiment.names import check_name
from pipeline.host.blame import PluginRuntimeError
from pipeline.host.registry import Registry
from pipeline.stores.storage import check_artifact_location, parse_storage
from pipeline.stores.storage_loss import quiet_lost_heartbeats, saying_storage_lost, storage_lost
from pipeline.tracking.client import ROLE_TAG, RunTracker, TrackingSettings, client_for
from pipeline.tracking.http import TrackingUnavailable
from pipeline.tracking.urls import mask_url
from pipeline.training.cores import set_torch_threads
from pipeline.tuning.best_mark import complete_best, record_best
from pipeline.tuning.factories import (
    DEFAULT_PRUNER,
    DEFAULT_SAMPLER,
    make_pruner,
    make_sampler,
    rerun_seed,
)
from pipeline.tuning.optuna_log import quiet_optuna_tracebacks
from pipeline.tuning.progress import TuneProgress
from pipeline.tuning.report import best_trial, log_study_artifacts, summary, trial_line
from pipeline.tuning.search_space import build_search_space
from pipeline.tuning.study_config import check_parent_there, check_same_config

PARENT_ATTR = "mlflow_parent_run_id"


@dataclass(frozen=True)
class TuneOptions:
    n_trials: int | None = None
    timeout: float | None = None
    study_name: str | None = None
    storage: str | None = None
    sampler: str = DEFAULT_SAMPLER
    pruner: str = DEFAULT_PRUNER
    seed: int | None = None
    device: str | None = None
    n_jobs: int = 1


class Tuner:
    """Runs one ``pipeline tune`` invocation against a (new or resumed) study."""

    def __init__(
        self,
        experiment_file: str | Path,
        overrides: tuple[str, ...] | list[str],
        options: TuneOptions,
        *,
        registry: Registry,
        tracking: TrackingSettings | None,
        echo: Callable[[str], None] = print,
        progress: TuneProgress | None = None,
    ) -> None:
        if options.n_trials is not None and options.n_trials < 1:
            raise ConfigError("--n-trials", f"must be ≥ 1 (got {options.n_trials})")
        if options.n_jobs < 1:
            raise ConfigError("--n-jobs", f"must be ≥ 1 (got {options.n_jobs})")
        if options.timeout is not None and not options.timeout > 0:
            raise ConfigError("--timeout", f"must be > 0 seconds (got {options.timeout})")
        if options.study_name is not None:  # checked like an experiment name (names.py)
            check_name("--study-name", options.study_name)
        self.options = options
        self.registry = registry
        self.tracking = tracking
        self.echo = echo
        self.progress = progress or TuneProgress()
        base = apply_overrides(load_yaml(experiment_file), overrides, registry=registry)
        if options.device is not None:
            base = apply_overrides(base, [f"train.device={options.device}"])
        # everything is validated before the first trial: the base, the space, the device
        self.base_experiment = validate({k: v for k, v in base.items() if k != "tune"}, registry)
        self.space = build_search_space(base, registry)
        # torch and Optuna only now: a refused file or space is reported without them
        from pipeline.stores import dead_trials
        from pipeline.training.device import resolve_device

        resolve_device(self.base_experiment.train.device)
        train = self.base_experiment.train
        self.sampler = make_sampler(options.sampler, options.seed, self.space)
        self.pruner = make_pruner(options.pruner, train.steps, train.eval_every)
        self.study_name = options.study_name or self.base_experiment.name
        self.experiment_name = (
            tracking.experiment_name
            if tracking and tracking.experiment_name
            else self.base_experiment.name
        )
        self._lock = threading.Lock()
        self.parent: RunTracker | None = None
        self.retry_dead = dead_trials.RetryDeadTrial(
            tracking, echo, on_dead_worker=self._forget_worker
        )

    # -- study and parent run --------------------------------------------------------
    def open_study(self):
        """Open (or create) the study and join it: the study, its MLflow parent run and this
        worker's registration are created under the storage's own lock
        (:func:`pipeline.tracking.locks.store_lock`), so workers starting in one instant on a
        fresh store create the schema, the study and the parent run exactly once."""
        import optuna

        from pipeline.stores import study_workers
        from pipeline.tracking.locks import store_lock

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        quiet_optuna_tracebacks()  # a failed trial ends in one error: line, not Optuna's log
        quiet_lost_heartbeats()  # a lost storage too: the heartbeat's traceback
        # refuse a bad storage or artifact location before either creates anything
        location = parse_storage(self.options.storage, self.tracking)
        location.check()
        if self.tracking is not None:
            check_artifact_location(self.tracking, self.experiment_name)
        self.storage_url = location.url
        with store_lock(location.url, "study"):
            study = optuna.create_study(
                study_name=self.study_name,
                storage=location.open(),
                sampler=self.sampler,
                pruner=self.pruner,
                direction=self.space.direction,
                load_if_exists=True,
            )
            if study.direction.name.lower() != self.space.direction:
                raise ConfigError(
                    "tune.objective.direction",
                    f"study {self.study_name!r} exists with direction "
                    f"{study.direction.name.lower()}; use another --study-name",
                )
            self._check_same_base(study)
            # a rerun with the same --seed continues the draws instead of repeating them
            seed = rerun_seed(self.options.seed, len(study.get_trials(deepcopy=False)))
            if seed != self.options.seed:
                self.sampler = make_sampler(self.options.sampler, seed, self.space)
                study.sampler = self.sampler
            study.set_user_attr("objective_metric", self.space.metric)
            self.parent = self.attach_parent(study)
            study_workers.join(study)
        return study

    def _check_same_base(self, study) -> None:
        """Its config must be the one the study started with (see study_config)."""
        base = {k: v for k, v in self.base_experiment.flat_params().items() if k != "train.device"}
        check_same_config(study, self.study_name, base, self.space.spec.model_dump(mode="json"))

    def attach_parent(self, study) -> RunTracker | None:
        """The study's parent run: created if the study has none, else set RUNNING again.
        Call it under the study's store lock (:meth:`open_study` does): the read and the
        write of the study's parent id are then one step, whoever else starts with us."""
        if self.tracking is None:
            return None
        client = client_for(self.tracking)
        run_id = study._storage.get_study_user_attrs(study._study_id).get(PARENT_ATTR)
        if run_id:
            check_parent_there(client, run_id, self.study_name, self.storage_url, self.tracking)
            parent = RunTracker(client, run_id, self.tracking.tracking_uri)
            client.update_run(run_id, status="RUNNING")
            return parent
        parent = RunTracker.start(
            self.tracking,
            self.experiment_name,
            run_name=f"study {self.study_name}",
            tags={
                "optuna.study_name": self.study_name,
                "optuna.storage": mask_url(self.storage_url),
                "optuna.direction": self.space.direction,
                "optuna.objective": self.space.metric,
                ROLE_TAG: "study",
            },
        )
        study.set_user_attr(PARENT_ATTR, parent.run_id)
        parent.log_params({f"base.{k}": v for k, v in self.base_experiment.flat_params().items()})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "search_space.yaml"
            path.write_text(yaml.safe_dump(self.space.spec.model_dump(), sort_keys=False))
            parent.log_artifact(path)
        return parent

    def _forget_worker(self, study, worker) -> None:
        from pipeline.stores import study_workers
        from pipeline.tracking.locks import store_lock

        with store_lock(self.storage_url, "study"):
            study_workers.forget(study, worker)

    def leave_study(self, study, status: str, wall: float) -> bool:
        """Unregister this worker; the last one to leave gives the best trial its figures,
        logs the study's table and plots, and ends the parent run with ``status``. Returns
        whether this worker was the last."""
        from pipeline.stores import study_workers
        from pipeline.tracking.locks import store_lock

        with store_lock(self.storage_url, "study"):
            last = study_workers.leave(study)
            if self.parent is None:
                return last
            self.parent.log_metrics([("tune_wall_time_s", wall, len(study.trials))])
            if not last:
                return False
            try:
                if status == "FINISHED":
                    complete_best(study, self.tracking, self.registry, self.echo)
                log_study_artifacts(study, self.parent, self.space)
            finally:
                self.parent.client.set_terminated(self.parent.run_id, status=status)
        return True

    # -- one trial ---------------------------------------------------------------------
    def objective(self, trial) -> float:
        import optuna

        from pipeline.stores import dead_trials
        from pipeline.training.run import run_training
        from pipeline.tuning.trial_seeds import TrialSeeds  # the trainer: torch only now

        dead_trials.mark_worker(trial)
        retry_of = trial.user_attrs.get(dead_trials.RETRY_OF_ATTR)

        values = self.space.suggest(trial)
        tree = self.space.apply(values)
        exp = validate(tree, self.registry)
        metric = self.space.metric
        seeds = TrialSeeds(exp.train.seed, self.space.spec.seeds)

        def on_eval(step: int, metrics: dict[str, float]) -> None:
            value = self.space.value(metrics)
            trial.set_user_attr("last_step", step)
            self.progress.step(trial.number, step)
            if math.isfinite(value):
                trial.report(value, step)
            if trial.should_prune():
                trial.set_user_attr("pruned_at_step", step)
                raise optuna.TrialPruned(f"pruned at step {step} ({metric}={value:.4g})")

        def lost_says(fn):  # the storage lost under a callback: the run's reason says so
            return saying_storage_lost(self.storage_url, fn)

        def started(run_id: str) -> None:
            trial.set_user_attr("mlflow_run_id", run_id)

        def train():
            return run_training(
                exp,
                tracking=self.tracking,
                progress=False,
                on_eval=lost_says(seeds.on_eval(trial, self.space.value, on_eval)),
                parent_run_id=self.parent.run_id if self.parent else None,
                run_name=self.trial_run_name(trial.number),
                extra_tags={
                    ROLE_TAG: "trial",
                    "optuna.study_name": self.study_name,
                    "optuna.trial_number": str(trial.number),
                    "optuna.params": json.dumps(values),
                }
                | ({} if retry_of is None else {"optuna.retry_of": str(retry_of)})
                | seeds.tags(),
                extra_params={f"trial.{k}": v for k, v in values.items()}
                | {"trial.number": trial.number},
                status_for=lambda e: "KILLED" if isinstance(e, optuna.TrialPruned) else None,
                on_run_started=lost_says(started),
                trial=True,
                combine_eval=seeds.combine_eval(),
            )

        def experiment_for(seed: int):
            return validate(apply_overrides(tree, [f"train.seed={seed}"]), self.registry)

        try:
            result = seeds.run(trial, train, experiment_for)
        except (NonFiniteLossError, PluginRuntimeError) as exc:
            # FAIL in Optuna; the reason (naming the plugin) goes into the trial's line
            trial.set_user_attr("fail_reason", str(exc))
            raise
        trial.set_user_attr("wall_time_s", result.wall_time_s)
        return self.space.value(result.metrics)

    def trial_run_name(self, number: int) -> str:
        """The MLflow run name of trial ``number`` (a comparison's names its variant)."""
        return f"trial {number}"

    def after_trial(self, study, trial) -> None:
        """Tag the child with its Optuna state, keep the parent's best current, print a line."""
        from pipeline.stores import dead_trials

        state = trial.state.name
        with self._lock:
            run_id = trial.user_attrs.get("mlflow_run_id")
            if self.tracking is not None and run_id:
                client = client_for(self.tracking)
                tags = {"optuna.state": state}
                if "pruned_at_step" in trial.user_attrs:
                    tags["optuna.pruned_at_step"] = str(trial.user_attrs["pruned_at_step"])
                for k, v in tags.items():
                    client.set_tag(run_id, k, v)
            best = best_trial(study)
            if self.parent is not None and best is not None:
                record_best(self.parent, best, trial.number, self.storage_url)
            self.echo(trial_line(trial, self.space.metric))
            self.progress.trial_done(trial.number, None if best is None else best.value)
        dead_trials.fail_dead_trials(study, self.retry_dead)  # a sibling's, on this host

    # -- the whole invocation ----------------------------------------------------------
    def run(self):
        from pipeline.stores import dead_trials

        study = self.open_study()
        set_torch_threads(1, self.options.n_jobs)  # the usable cores, unless OMP_NUM_THREADS
        self.echo(
            f"study {self.study_name!r} ({len(study.trials)} trials so far) "
            f"in {mask_url(self.storage_url)}; "
            f"objective: {self.space.direction} {self.space.metric}; "
            f"sampler {self.options.sampler}, pruner {self.options.pruner}"
            + (f"; MLflow parent run {self.parent.run_id}" if self.parent else "")
        )
        start = time.perf_counter()
        status = "FINISHED"
        self.progress.start(self.options.n_trials, self.options.timeout, self.space.metric)
        try:
            dead_trials.fail_dead_trials(study, self.retry_dead)
            study.optimize(
                self.objective,
                n_trials=self.options.n_trials,
                timeout=self.options.timeout,
                n_jobs=self.options.n_jobs,
                callbacks=[self.after_trial],
                catch=(NonFiniteLossError, PluginRuntimeError),
                gc_after_trial=False,
            )
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        except BaseException as exc:
            status = "FAILED"
            if told := storage_lost(self.storage_url, exc):
                raise told from exc
            raise
        finally:
            self.progress.close()
            try:
                self.leave_study(study, status, wall := time.perf_counter() - start)
            except Exception as lost:  # the storage is gone: end the parent all the same
                told = storage_lost(self.storage_url, lost)
                if self.parent is not None and not isinstance(lost, TrackingUnavailable):
                    why = (
                        told
                        or f"Optuna storage {mask_url(self.storage_url)} failed: {one_line(lost)}"
                    )
                    with suppress(Exception):  # the server may be gone too: tell `lost`
                        self.parent.finish("FAILED", str(why))
                if told:
                    raise told from lost
                raise
        self.echo(summary(study, self.space.metric, wall))
        return study
