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
- A trial records what the search and the live view need (``run_training(trial=True)``,
  :mod:`pipeline.trial_record`): per-step metrics as window means, sent every 10 s;
  evaluation samples, not figures; no generator model. When the search ends, the study's
  best trial gets its figures and generator (:meth:`Tuner.complete_best`); ``pipeline
  best`` does the same for a best trial that lacks them.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.config import apply_overrides, load_yaml, validate
from pipeline.errors import ConfigError, NonFiniteLossError, PipelineError
from pipeline.registry import PluginRuntimeError, Registry
from pipeline.search_space import SearchSpace, build_search_space
from pipeline.storage import (
    check_artifact_location,
    default_storage_path,  # noqa: F401  (re-exported: it lived here)
    open_storage,
    parse_storage,
)
from pipeline.tracking import RunTracker, TrackingSettings, client_for
from pipeline.urls import mask_url, scrub

SAMPLERS = ("tpe", "random", "grid", "cmaes")
PRUNERS = ("median", "hyperband", "none")
PARENT_ATTR = "mlflow_parent_run_id"


@dataclass(frozen=True)
class TuneOptions:
    n_trials: int | None = None
    timeout: float | None = None
    study_name: str | None = None
    storage: str | None = None
    sampler: str = "tpe"
    pruner: str = "median"
    seed: int | None = None
    device: str | None = None
    n_jobs: int = 1


def make_sampler(name: str, seed: int | None, space: SearchSpace):
    import optuna

    if name == "tpe":
        # multivariate + group: TPE that models conditional (group-wise) spaces jointly
        # (Falkner et al. 2018; Optuna's recommendation for define-by-run conditionals)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    if name == "grid":
        return optuna.samplers.GridSampler(space.grid(), seed=seed)
    if name == "cmaes":
        if any(p.type == "categorical" for p in space.params.values()):
            raise ConfigError("--sampler", "cmaes needs a numeric space (no categoricals)")
        return optuna.samplers.CmaEsSampler(seed=seed)
    raise ConfigError("--sampler", f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}")


def make_pruner(name: str, steps: int, eval_every: int):
    import optuna

    if name == "median":
        # Optuna's defaults, but never at a trial's first evaluation: GAN metrics that
        # early are mostly noise (a 30-trial WGAN-GP tune here pruned 19 trials there)
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=eval_every + 1)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=eval_every, max_resource=steps)
    if name == "none":
        return optuna.pruners.NopPruner()
    raise ConfigError("--pruner", f"unknown pruner {name!r}; choose from {', '.join(PRUNERS)}")


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
    ) -> None:
        if options.n_trials is not None and options.n_trials < 1:
            raise ConfigError("--n-trials", f"must be ≥ 1 (got {options.n_trials})")
        if options.n_jobs < 1:
            raise ConfigError("--n-jobs", f"must be ≥ 1 (got {options.n_jobs})")
        if options.timeout is not None and not options.timeout > 0:
            raise ConfigError("--timeout", f"must be > 0 seconds (got {options.timeout})")
        self.options = options
        self.registry = registry
        self.tracking = tracking
        self.echo = echo
        base = apply_overrides(load_yaml(experiment_file), overrides)
        if options.device is not None:
            base = apply_overrides(base, [f"train.device={options.device}"])
        # everything is validated before the first trial: the base, the space, the device
        self.base_experiment = validate({k: v for k, v in base.items() if k != "tune"}, registry)
        self.space = build_search_space(base, registry)
        # torch and Optuna only now: a refused file or space is reported without them
        from pipeline import dead_trials
        from pipeline.train import resolve_device

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
        self.retry_dead = dead_trials.RetryDeadTrial(tracking, echo)

    # -- study and parent run --------------------------------------------------------
    def open_study(self):
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        # refuse a bad storage or artifact location before either creates anything
        location = parse_storage(self.options.storage, self.tracking)
        location.check()
        if self.tracking is not None:
            check_artifact_location(self.tracking, self.experiment_name)
        storage, self.storage_url = location.open(), location.url
        study = optuna.create_study(
            study_name=self.study_name,
            storage=storage,
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
        study.set_user_attr("objective_metric", self.space.metric)
        return study

    def _check_same_base(self, study) -> None:
        """A study goes on only with the config it started with (mimicry's rule): trials of
        different base configs are not comparable."""
        base = {k: v for k, v in self.base_experiment.flat_params().items() if k != "train.device"}
        space = self.space.spec.model_dump(mode="json")
        known = study.user_attrs.get("base_config")
        if known is None:
            study.set_user_attr("base_config", base)
            study.set_user_attr("search_space", space)
            return
        changed = sorted(k for k in set(base) | set(known) if base.get(k) != known.get(k))
        if changed or study.user_attrs.get("search_space") != space:
            what = ", ".join(changed[:5]) if changed else "the tune: space"
            raise ConfigError(
                "--study-name",
                f"study {self.study_name!r} was started with a different config ({what} "
                f"differ); resume it with the same file and overrides, or pick a new "
                f"--study-name",
            )

    def attach_parent(self, study) -> RunTracker | None:
        """Find the study's parent run, or create it (once, even with several workers)."""
        if self.tracking is None:
            return None
        client = client_for(self.tracking)
        run_id = study.user_attrs.get(PARENT_ATTR)
        if run_id:
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
                "pipeline.role": "study",
            },
        )
        study.set_user_attr(PARENT_ATTR, parent.run_id)
        # another worker may have raced us: the first id written to the study wins
        winner = _reload_user_attr(study, PARENT_ATTR)
        if winner != parent.run_id:
            client.delete_run(parent.run_id)
            return RunTracker(client, winner, self.tracking.tracking_uri)
        parent.log_params({f"base.{k}": v for k, v in self.base_experiment.flat_params().items()})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "search_space.yaml"
            path.write_text(yaml.safe_dump(self.space.spec.model_dump(), sort_keys=False))
            parent.log_artifact(path)
        return parent

    # -- one trial ---------------------------------------------------------------------
    def objective(self, trial) -> float:
        import optuna

        from pipeline import dead_trials
        from pipeline.train import run_training

        dead_trials.mark_worker(trial)
        retry_of = trial.user_attrs.get(dead_trials.RETRY_OF_ATTR)
        values = self.space.suggest(trial)
        exp = validate(self.space.apply(values), self.registry)
        metric = self.space.metric

        def on_eval(step: int, metrics: dict[str, float]) -> None:
            value = metrics[metric]
            trial.set_user_attr("last_step", step)
            if math.isfinite(value):
                trial.report(value, step)
            if trial.should_prune():
                trial.set_user_attr("pruned_at_step", step)
                raise optuna.TrialPruned(f"pruned at step {step} ({metric}={value:.4g})")

        def started(run_id: str) -> None:
            trial.set_user_attr("mlflow_run_id", run_id)

        try:
            result = run_training(
                exp,
                tracking=self.tracking,
                progress=False,
                on_eval=on_eval,
                parent_run_id=self.parent.run_id if self.parent else None,
                run_name=f"trial {trial.number}",
                extra_tags={
                    "optuna.study_name": self.study_name,
                    "optuna.trial_number": str(trial.number),
                    "optuna.params": json.dumps(values),
                }
                | ({} if retry_of is None else {"optuna.retry_of": str(retry_of)}),
                extra_params={f"trial.{k}": v for k, v in values.items()}
                | {"trial.number": trial.number},
                status_for=lambda e: "KILLED" if isinstance(e, optuna.TrialPruned) else None,
                on_run_started=started,
                trial=True,
            )
        except (NonFiniteLossError, PluginRuntimeError) as exc:
            # FAIL in Optuna; the reason (naming the plugin) goes into the trial's line
            trial.set_user_attr("fail_reason", str(exc))
            raise
        trial.set_user_attr("wall_time_s", result.wall_time_s)
        return result.metrics[metric]

    def after_trial(self, study, trial) -> None:
        """Tag the child with its Optuna state, keep the parent's best current, print a line."""
        from pipeline import dead_trials

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
            best = _best_trial(study)
            if self.parent is not None and best is not None:
                self._record_best(best, trial.number)
            self.echo(_trial_line(trial, self.space.metric))
        dead_trials.fail_dead_trials(study, self.retry_dead)  # a sibling's, on this host

    def _record_best(self, best, step: int) -> None:
        """Best value as a metric, best params as ``best.param.<key>`` tags (stale ones of a
        conditional parameter the new best does not have are deleted)."""
        parent = self.parent
        assert parent is not None
        parent.log_metrics([("best_value", best.value, step)])
        tags = {f"best.param.{k}": v for k, v in best.params.items()}
        stale = [
            k
            for k in parent.client.get_run(parent.run_id).data.tags
            if k.startswith("best.param.") and k not in tags
        ]
        for key in stale:
            parent.client.delete_tag(parent.run_id, key)
        parent.set_tags(
            tags
            | {
                "best.trial": best.number,
                "best.value": best.value,
                "best.run_id": best.user_attrs.get("mlflow_run_id", ""),
            }
        )

    def complete_best(self, study) -> None:
        """Give the study's best trial its figures and generator model (a trial runs
        without them: :mod:`pipeline.trial_record`); once, when the search ends."""
        from pipeline.trial_record import complete_trial_run

        best = _best_trial(study)
        run_id = best.user_attrs.get("mlflow_run_id") if best is not None else None
        if self.tracking is None or not run_id:
            return
        try:
            done = complete_trial_run(self.tracking, run_id, self.registry)
        except Exception as exc:  # the study stands; `pipeline best` tries again
            why = scrub(f"{type(exc).__name__}: {exc}", self.tracking.tracking_uri)
            self.echo(
                f"best trial {best.number}: figures and generator not logged ({why}); "
                f"`pipeline best` tries again"
            )
            return
        if done:
            self.echo(f"best trial {best.number}: figures and generator logged to run {run_id}")

    # -- the whole invocation ----------------------------------------------------------
    def run(self):
        import torch

        from pipeline import dead_trials

        study = self.open_study()
        self.parent = self.attach_parent(study)
        if self.options.n_jobs > 1:
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // self.options.n_jobs))
        self.echo(
            f"study {self.study_name!r} ({len(study.trials)} trials so far) "
            f"in {mask_url(self.storage_url)}; "
            f"objective: {self.space.direction} {self.space.metric}; "
            f"sampler {self.options.sampler}, pruner {self.options.pruner}"
            + (f"; MLflow parent run {self.parent.run_id}" if self.parent else "")
        )
        dead_trials.fail_dead_trials(study, self.retry_dead)
        start = time.perf_counter()
        status = "FINISHED"
        try:
            study.optimize(
                self.objective,
                n_trials=self.options.n_trials,
                timeout=self.options.timeout,
                n_jobs=self.options.n_jobs,
                callbacks=[self.after_trial],
                catch=(NonFiniteLossError, PluginRuntimeError),
                gc_after_trial=False,
            )
            self.complete_best(study)
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            wall = time.perf_counter() - start
            if self.parent is not None:
                self.parent.log_metrics([("tune_wall_time_s", wall, len(study.trials))])
                try:
                    log_study_artifacts(study, self.parent, self.space)
                finally:
                    self.parent.client.set_terminated(self.parent.run_id, status=status)
        self.echo(summary(study, self.space.metric, wall))
        return study


def _reload_user_attr(study, key: str) -> Any:
    import optuna

    reloaded = optuna.load_study(study_name=study.study_name, storage=study._storage)
    return reloaded.user_attrs.get(key)


def _best_trial(study):
    import optuna

    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not done:
        return None
    try:
        return study.best_trial
    except ValueError:
        return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _trial_line(trial, metric: str) -> str:
    params = " ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    state = trial.state.name
    if state == "COMPLETE":
        result = f"{metric}={_fmt(trial.value)}"
    elif state == "PRUNED":
        result = f"at step {trial.user_attrs.get('pruned_at_step', '?')}"
    else:
        result = ""
    seconds = trial.duration.total_seconds() if trial.duration else float("nan")
    line = f"trial {trial.number:4d}  {state:<8} {result:<18} {params}  ({seconds:.1f} s)"
    if state == "FAIL" and "fail_reason" in trial.user_attrs:
        line += f"\n  {trial.user_attrs['fail_reason']}"
    return line


def summary(study, metric: str, wall: float) -> str:
    import optuna

    from pipeline import dead_trials

    counts = dead_trials.state_counts(study)
    parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    best = _best_trial(study)
    line = f"{len(study.trials)} trials in the study ({parts}); this run took {wall:.0f} s"
    if best is not None:
        params = " ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        line += f"\nbest: trial {best.number}, {metric}={_fmt(best.value)}, {params}"
        run_id = best.user_attrs.get("mlflow_run_id")
        if run_id:
            line += f", MLflow run {run_id}"
    del optuna
    return line


def log_study_artifacts(study, parent: RunTracker, space: SearchSpace) -> None:
    """Trials table (CSV) and Optuna's plots (history, importances, contour) as HTML + PNG."""
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        frame = study.trials_dataframe()
        frame.to_csv(out / "trials.csv", index=False)
        parent.log_artifact(out / "trials.csv")
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            return
        names = list(space.params)
        contour = [n for n in ("train.n_critic", "constraint.weight") if n in names]
        if len(contour) < 2:
            contour = [n for n in names if space.params[n].type != "categorical"][:2]
        plots: dict[str, tuple[Callable, Callable, dict]] = {
            "optimization_history": (
                optuna.visualization.plot_optimization_history,
                optuna.visualization.matplotlib.plot_optimization_history,
                {},
            ),
        }
        if len(names) >= 2 and len(complete) >= 2:
            plots["param_importances"] = (
                optuna.visualization.plot_param_importances,
                optuna.visualization.matplotlib.plot_param_importances,
                {},
            )
        if len(contour) == 2 and len(complete) >= 2:
            plots["contour"] = (
                optuna.visualization.plot_contour,
                optuna.visualization.matplotlib.plot_contour,
                {"params": contour},
            )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the matplotlib backend is "experimental"
            for name, (html_plot, png_plot, kwargs) in plots.items():
                _save_plot(out, name, html_plot, png_plot, study, kwargs, parent)


def _save_plot(out, name, html_plot, png_plot, study, kwargs, parent) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        html_plot(study, **kwargs).write_html(out / f"{name}.html", include_plotlyjs=True)
        parent.log_artifact(out / f"{name}.html", "plots")
    except (ImportError, ValueError, RuntimeError) as exc:  # plotly missing, too few trials
        parent.set_tags({f"plot_skipped.{name}.html": str(exc)[:500]})
    try:
        axes = png_plot(study, **kwargs)
        figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
        figure.set_size_inches(8, 6)
        figure.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
        plt.close(figure)
        parent.log_artifact(out / f"{name}.png", "plots")
    except (ImportError, ValueError, RuntimeError) as exc:
        parent.set_tags({f"plot_skipped.{name}.png": str(exc)[:500]})


def complete_best_run(report: dict[str, Any], tracking: TrackingSettings) -> str | None:
    """Give the best trial of ``report`` (:func:`best_report`) its figures and generator
    when it lacks them, and add ``best_model_uri`` once its run holds the generator.

    Returns a line for the user: what was logged, or why it could not be (the report
    stands either way).
    """
    from mlflow.exceptions import MlflowException

    from pipeline.trial_record import complete_trial_run, has_generator

    run_id = report["best_run_id"]
    try:
        done = complete_trial_run(tracking, run_id)
        tags = client_for(tracking).get_run(run_id).data.tags
    except (PipelineError, MlflowException, OSError) as exc:
        why = scrub(str(exc), tracking.tracking_uri)
        return f"warning: the figures and generator of run {run_id} were not logged: {why}"
    if has_generator(tags):
        report["best_model_uri"] = f"runs:/{run_id}/generator"
    if done:
        return f"best trial {report['best_trial']}: figures and generator logged to run {run_id}"
    return None


def best_report(study_name: str, storage: str | None, tracking: TrackingSettings | None) -> dict:
    """The best trial of a study, its params and its MLflow run, as a dict."""
    import optuna

    from pipeline import dead_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store, url = open_storage(storage, tracking, must_exist=True)
    url = mask_url(url)
    try:
        study = optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        names = [s.study_name for s in optuna.get_all_study_summaries(store)]
        raise ConfigError(
            "study", f"no study {study_name!r} in {url}; studies: {', '.join(names) or 'none'}"
        ) from None
    best = _best_trial(study)
    counts = dead_trials.state_counts(study)  # a dead worker's trial is DEAD, not RUNNING
    report: dict[str, Any] = {
        "study": study_name,
        "storage": url,
        "direction": study.direction.name.lower(),
        "objective": study.user_attrs.get("objective_metric"),
        "trials": {
            s: counts.get(s, 0)
            for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING", "WAITING", "DEAD")
        },
        "parent_run_id": study.user_attrs.get(PARENT_ATTR),
    }
    if best is not None:
        report |= {
            "best_trial": best.number,
            "best_value": best.value,
            "best_params": best.params,
            "best_run_id": best.user_attrs.get("mlflow_run_id"),
        }
    return report
