"""A comparison's tuning of one variant: :class:`VariantTuner` (``pipeline tune``'s
:class:`~pipeline.tuning.tuner.Tuner` under the comparison's parent run), the tags and study
attributes that tie runs and studies to a comparison, and :func:`spent`, the budget a
study has used (:mod:`pipeline.compare.runner` runs the whole comparison)."""

from __future__ import annotations

import time
from typing import Any

from pipeline.compare.file import Comparison
from pipeline.errors import ConfigError
from pipeline.tracking.client import ROLE_TAG, RunTracker, client_for
from pipeline.tuning.tuner import Tuner

ROLE = ROLE_TAG
NAME_TAG = "comparison.name"
VARIANT_TAG = "comparison.variant"
SEED_TAG = "comparison.seed"
SETTING_TAG = "comparison.setting"
#: the setting tag of a seed run of a variant's untuned setting (``defaults: true``)
DEFAULT_SETTING = "default"
FINGERPRINT_TAG = "comparison.fingerprint"
FIELDS_TAG = "comparison.fields"
#: user attributes of each variant's study
STUDY_COMPARISON_ATTR = "comparison"
STUDY_FINGERPRINT_ATTR = "comparison_fingerprint"
STUDY_VARIANT_ATTR = "comparison_variant"
#: an MLflow experiment kind its UI opens in the model-training view, not the GenAI one
#: (``mlflow.experimentKind``; values: the UI's ExperimentKind enum, MLflow 3)
EXPERIMENT_KIND = "custom_model_development"


class VariantTuner(Tuner):
    """A :class:`Tuner` for one variant: its study run sits under the comparison's parent
    run, its trials are tagged with the variant, and each trial's CPU time is kept."""

    def __init__(
        self, *args: Any, comparison: Comparison, variant: str, parent_id: str, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.comparison = comparison
        self.variant = variant
        self.comparison_parent_id = parent_id

    def open_study(self):
        study = super().open_study()
        known = study.user_attrs.get(STUDY_FINGERPRINT_ATTR)
        fingerprint = self.comparison.fingerprint()
        if known is not None and known != fingerprint:
            raise ConfigError(
                "comparison file",
                f"study {self.study_name!r} belongs to another version of comparison "
                f"{self.comparison.name!r}; restore the file or give the comparison a new name",
            )
        study.set_user_attr(STUDY_COMPARISON_ATTR, self.comparison.name)
        study.set_user_attr(STUDY_VARIANT_ATTR, self.variant)
        study.set_user_attr(STUDY_FINGERPRINT_ATTR, fingerprint)
        return study

    def attach_parent(self, study) -> RunTracker | None:
        parent = super().attach_parent(study)
        if parent is not None:
            parent.set_tags(
                {
                    "mlflow.parentRunId": self.comparison_parent_id,
                    NAME_TAG: self.comparison.name,
                    VARIANT_TAG: self.variant,
                }
            )
        return parent

    def objective(self, trial) -> float:
        start = time.process_time()
        try:
            return super().objective(trial)
        finally:
            trial.set_user_attr("cpu_time_s", time.process_time() - start)

    def trial_run_name(self, number: int) -> str:
        return f"{self.variant} · trial {number}"

    def after_trial(self, study, trial) -> None:
        self.tag_trial(trial)
        super().after_trial(study, trial)

    def tag_trial(self, trial) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if self.tracking is None or not run_id:
            return
        client = client_for(self.tracking)
        for key, value in {
            ROLE: "trial",
            NAME_TAG: self.comparison.name,
            VARIANT_TAG: self.variant,
        }.items():
            client.set_tag(run_id, key, value)


def spent(study) -> tuple[int, float]:
    """Trials that used the budget (finished, pruned, or failed on their own: an
    interrupted trial has no ``fail_reason``) and their summed wall time in seconds."""
    n, seconds = 0, 0.0
    for t in study.get_trials(deepcopy=False):
        state = t.state.name
        if state in ("COMPLETE", "PRUNED") or (state == "FAIL" and "fail_reason" in t.user_attrs):
            n += 1
            if t.duration is not None:
                seconds += t.duration.total_seconds()
    return n, seconds
