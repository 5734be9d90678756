"""``pipeline best``: a study's best trial, its params and its MLflow run."""

from __future__ import annotations

from typing import Any

from pipeline.errors import ConfigError
from pipeline.storage import open_storage
from pipeline.tracking import TrackingSettings
from pipeline.tune import PARENT_ATTR
from pipeline.tune_report import best_trial
from pipeline.urls import mask_url


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
    return report
