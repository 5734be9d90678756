"""The study's best trial, marked where MLflow's runs table shows it.

The best trial's run carries the tag ``pipeline.best = true`` and its name says so
(``trial 3 (best)``); when another trial becomes the best, the mark moves: the tag is
deleted from every other trial run of the study and their names lose the suffix. It is
done from the runs themselves (a search of the parent's children), so a worker that finds
another worker's trial is now the best moves the mark too, and a mark left by a worker
that died is taken away by the next one. When the search ends, the best trial gets its
figures and generator model (:func:`complete_best`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.tracking.client import RunTracker, TrackingSettings

#: the tag on the best trial's run (its value: ``"true"``)
BEST_TAG = "pipeline.best"
#: what the best trial's run name ends with
BEST_SUFFIX = " (best)"


def best_name(name: str) -> str:
    """``name`` with the best suffix (once)."""
    return name if name.endswith(BEST_SUFFIX) else name + BEST_SUFFIX


def plain_name(name: str) -> str:
    """``name`` without the best suffix."""
    return name.removesuffix(BEST_SUFFIX)


def move_best_mark(client: Any, parent_run_id: str, best_run_id: str) -> bool:
    """Mark ``best_run_id`` (a child of ``parent_run_id``) as the best and unmark the
    others; returns whether anything changed. ``client``: an ``MlflowClient``."""
    parent = client.get_run(parent_run_id)
    marked = client.search_runs(
        [parent.info.experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`{BEST_TAG}` = 'true'",
    )
    changed = False
    for run in marked:
        if run.info.run_id == best_run_id:
            continue
        client.delete_tag(run.info.run_id, BEST_TAG)
        client.set_tag(run.info.run_id, "mlflow.runName", plain_name(run.info.run_name or ""))
        changed = True
    if best_run_id not in {r.info.run_id for r in marked}:
        name = client.get_run(best_run_id).info.run_name or ""
        client.set_tag(best_run_id, BEST_TAG, "true")
        client.set_tag(best_run_id, "mlflow.runName", best_name(name))
        changed = True
    return changed


def record_best(parent: RunTracker, best: Any, step: int, storage_url: str) -> None:
    """Keep the study's parent run current with ``best`` (an Optuna ``FrozenTrial``): the
    best value as a metric at ``step``, the best params as ``best.param.<key>`` tags (stale
    ones of a conditional parameter the new best does not have are deleted), and the mark
    on the best trial's run, moved under the store's lock (``storage_url``: the study's
    storage), so two workers finishing at once leave one mark."""
    from pipeline.tracking.locks import store_lock

    best_run = best.user_attrs.get("mlflow_run_id")
    if best_run:
        with store_lock(storage_url, "best"):
            move_best_mark(parent.client, parent.run_id, best_run)
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
            "best.run_id": best_run or "",
        }
    )


#: the study's user attribute naming the run its best trial's generator was logged to: a
#: ``pipeline best`` that finds the best trial's run there has nothing to complete and shows
#: the model URI without importing MLflow (≈ 2 s of a 2-core machine's start-up)
GENERATOR_LOGGED_ATTR = "generator_logged_run"


def complete_best(
    study: Any, tracking: TrackingSettings | None, registry: Any, echo: Callable[[str], None]
) -> None:
    """Give the study's best trial its figures and generator model (a trial runs without
    them: :mod:`pipeline.training.trial_record`); once, when the search ends. A failure is
    told through ``echo``: the study stands, and ``pipeline best`` tries again."""
    from pipeline.tracking.urls import scrub
    from pipeline.training.trial_record import complete_trial_run
    from pipeline.tuning.report import best_trial

    best = best_trial(study)
    run_id = best.user_attrs.get("mlflow_run_id") if best is not None else None
    if tracking is None or not run_id:
        return
    try:
        done = complete_trial_run(tracking, run_id, registry)
    except Exception as exc:
        why = scrub(f"{type(exc).__name__}: {exc}", tracking.tracking_uri)
        echo(
            f"best trial {best.number}: figures and generator not logged ({why}); "
            "`pipeline best` tries again"
        )
        return
    if done:
        study.set_user_attr(GENERATOR_LOGGED_ATTR, run_id)  # `pipeline best` needs no MLflow
        echo(f"best trial {best.number}: figures and generator logged to run {run_id}")
