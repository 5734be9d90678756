"""``pipeline best``: a study's best trial, its params and its MLflow run."""

from __future__ import annotations

from typing import Any

from pipeline.errors import ConfigError, PipelineError
from pipeline.stores.storage import open_storage
from pipeline.tracking.client import TrackingSettings, client_for
from pipeline.tracking.urls import mask_url, scrub
from pipeline.tuning.best_mark import GENERATOR_LOGGED_ATTR
from pipeline.tuning.report import best_trial
from pipeline.tuning.tuner import PARENT_ATTR


def best_report(study_name: str, storage: str | None, tracking: TrackingSettings | None) -> dict:
    """The best trial of a study, its params and its MLflow run, as a dict."""
    import optuna

    from pipeline.stores import dead_trials

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store, url = open_storage(storage, tracking, must_exist=True)
    url = mask_url(url)
    try:
        study = optuna.load_study(study_name=study_name, storage=store)
    except KeyError:
        summaries = optuna.get_all_study_summaries(store)
        variants = comparison_studies(summaries, study_name)
        if variants:  # a comparison: each variant's study (pipeline.compare.runner)
            return {
                "comparison": study_name,
                "storage": url,
                "variants": {v: best_report(n, storage, tracking) for v, n in variants.items()},
            }
        names = [s.study_name for s in summaries]
        raise ConfigError(
            "study", f"no study {study_name!r} in {url}; studies: {', '.join(names) or 'none'}"
        ) from None
    best = best_trial(study)
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
        logged = study.user_attrs.get(GENERATOR_LOGGED_ATTR)
        if logged and logged == report["best_run_id"]:  # complete: nothing to ask MLflow
            report["best_model_uri"] = f"runs:/{logged}/generator"
    return report


def comparison_studies(summaries, name: str) -> dict[str, str]:
    """The study of each variant of comparison ``name`` (:mod:`pipeline.compare.runner` marks its
    studies with the ``comparison`` user attribute), by variant."""
    return {
        s.user_attrs.get("comparison_variant", s.study_name): s.study_name
        for s in summaries
        if s.user_attrs.get("comparison") == name
    }


def complete_best_run(report: dict[str, Any], tracking: TrackingSettings) -> str | None:
    """Give the best trial of ``report`` (:func:`best_report`) its figures and generator
    when it lacks them, and add ``best_model_uri`` once its run holds the generator.

    Returns a line for the user: what was logged, or why it could not be (the report
    stands either way).
    """
    if "best_model_uri" in report:  # logged when the search ended (best_mark.complete_best)
        return None
    from mlflow.exceptions import MlflowException

    from pipeline.training.trial_record import complete_trial_run, has_generator

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
