"""A study goes on only with the config it started with (mimicry's rule): trials of
different base configs are not comparable. The base and the search space are kept in the
study's user attributes when it starts and compared on every later start. And only on the
MLflow store that holds its runs."""

from __future__ import annotations

from typing import Any

from pipeline.errors import ConfigError
from pipeline.tracking.urls import mask_url
from pipeline.training.resume import ADDED_SETTINGS


def check_same_config(study, study_name: str, base: dict[str, Any], space: dict[str, Any]) -> None:
    """Record ``base`` (flat params) and ``space`` on a new study; refuse another config on
    a known one, naming the keys that differ."""
    known = study.user_attrs.get("base_config")
    if known is None:
        study.set_user_attr("base_config", base)
        study.set_user_attr("search_space", space)
        return
    # a study started before a setting existed ran with the value that trains as before
    known = {k: v for k, v in ADDED_SETTINGS.items() if k in base} | known
    known_space = {"seeds": 1} | study.user_attrs.get("search_space", {})
    if isinstance(known_space.get("objective"), dict):  # a study from before over_seeds
        known_space["objective"] = {"over_seeds": "mean"} | known_space["objective"]
    changed = sorted(k for k in set(base) | set(known) if base.get(k) != known.get(k))
    if changed or known_space != space:
        what = ", ".join(changed[:5]) if changed else "the tune: space"
        raise ConfigError(
            "--study-name",
            f"study {study_name!r} was started with a different config ({what} differ); "
            f"resume it with the same file and overrides, or pick a new --study-name",
        )


def check_parent_there(client, run_id: str, study_name: str, storage_url: str, tracking) -> None:
    """A study whose MLflow parent run ``run_id`` is not in ``tracking``'s store
    (``mlflow.db`` deleted or replaced while the Optuna storage was kept) is refused in one
    line, before any trial."""
    from mlflow.exceptions import MlflowException

    try:
        client.get_run(run_id)
    except MlflowException as exc:
        if getattr(exc, "error_code", "") != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ConfigError(
            "--tracking-uri",
            f"study {study_name!r} in {mask_url(storage_url)} logs to MLflow run {run_id}, "
            f"which is not in {mask_url(tracking.tracking_uri)} (the store deleted or "
            "replaced?): point --tracking-uri at the store that holds it, or start a new "
            "study (--study-name)",
        ) from None
