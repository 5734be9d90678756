"""``pipeline compare``: tune each variant with the same budget, re-train the best on seeds.

The protocol of Lucic et al. 2018 ("Are GANs Created Equal? A Large-Scale Study") and
Kurach et al. 2019 ("A Large-Scale Study on Regularization and Normalization in GANs"):
every variant of a comparison (:mod:`pipeline.compare.file`) is tuned as its own Optuna
study ``<comparison>-<variant>`` with ``pipeline tune``'s machinery
(:class:`pipeline.tuning.tuner.Tuner`: storage, sampler, pruner) and the same budget; the best
setting of each is then re-trained on every seed; the report
(:mod:`pipeline.compare.report`) gives mean ± standard error over the seeds.

In MLflow, one experiment (the comparison's name) holds one **parent run** of the
comparison (tag ``pipeline.role=comparison``). Under it: each variant's study run
(``pipeline.role=study``) with that variant's trials under it (``pipeline.role=trial``),
and the seed re-trainings (``pipeline.role=seed``, ``comparison.seed``). Every run is
tagged ``comparison.name`` and ``comparison.variant``.

Rerunning continues where a run stopped: each study is resumed with what is left of its
budget (trials that finished, were pruned or failed on their own count; an interrupted
one does not), and a seed whose run FINISHED with the current best setting is not run
again. A changed comparison file is refused, naming the fields that changed.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.compare.file import Comparison, check_variants
from pipeline.compare.lock import comparison_lock
from pipeline.compare.results import ComparisonRecord
from pipeline.compare.tuner import (
    DEFAULT_SETTING,
    EXPERIMENT_KIND,
    FIELDS_TAG,
    FINGERPRINT_TAG,
    NAME_TAG,
    ROLE,
    SEED_TAG,
    SETTING_TAG,
    STUDY_VARIANT_ATTR,
    VARIANT_TAG,
    VariantTuner,
    spent,
)
from pipeline.compare.workers import BEST_KIND, DEFAULT_KIND, CompareWorkers
from pipeline.errors import ConfigError
from pipeline.tracking.client import RunTracker, TrackingSettings, client_for
from pipeline.tuning.report import best_trial
from pipeline.tuning.tuner import TuneOptions, Tuner


@dataclasses.dataclass(frozen=True)
class SeedJob:
    """One seed re-training of a variant's setting (``params``: the tuned values, {} for
    the untuned default; ``trial``: the study's best trial number, None for the default)."""

    variant: str
    params: dict[str, Any]
    setting: str
    trial: int | None
    seed: int


def job_kind(job: SeedJob) -> str:
    """How a worker task names the job's setting: the untuned default or the study's best."""
    return DEFAULT_KIND if job.trial is None else BEST_KIND


class ComparisonRunner:
    """One ``pipeline compare`` invocation."""

    def __init__(
        self,
        comparison: Comparison,
        *,
        tracking: TrackingSettings,
        storage: str | None = None,
        device: str | None = None,
        echo: Callable[[str], None] = print,
        on_phase: Callable[[str, str, int | None], None] | None = None,
    ) -> None:
        self.comparison = comparison
        #: told (variant, phase, seed) as the run goes on: a progress display's
        self.on_phase = on_phase or (lambda variant, phase, seed: None)
        self.experiments = check_variants(comparison)  # all refused before anything runs
        self.tracking = dataclasses.replace(
            tracking, experiment_name=tracking.experiment_name or comparison.name
        )
        self.storage = storage
        self.device = device
        self.echo = echo
        self.parent: RunTracker | None = None

    # -- the parent run ------------------------------------------------------------
    def find_parent(self) -> str | None:
        """The comparison's parent run id, after checking its fingerprint; None if new."""
        client = client_for(self.tracking)
        exp = client.get_experiment_by_name(self.tracking.experiment_name)
        if exp is None:
            return None
        runs = client.search_runs(
            [exp.experiment_id],
            f"tags.`{ROLE}` = 'comparison' and tags.`{NAME_TAG}` = '{self.comparison.name}'",
            order_by=["attributes.start_time ASC"],
        )
        if not runs:
            return None
        run = runs[0]
        if run.data.tags.get(FINGERPRINT_TAG) != self.comparison.fingerprint():
            known = json.loads(run.data.tags.get(FIELDS_TAG, "{}"))
            now = self.comparison.fields()
            changed = sorted(k for k in set(known) | set(now) if known.get(k) != now.get(k))
            raise ConfigError(
                "comparison file",
                f"comparison {self.comparison.name!r} was started with another file "
                f"({', '.join(changed) or 'its content'} differ); run it with the same file, "
                f"or give it a new name",
            )
        return run.info.run_id

    def open_parent(self) -> RunTracker:
        from pipeline.stores.storage import check_artifact_location

        check_artifact_location(self.tracking, self.tracking.experiment_name)
        client = client_for(self.tracking)
        run_id = self.find_parent()
        if run_id is not None:
            client.update_run(run_id, status="RUNNING")
            return RunTracker(client, run_id, self.tracking.tracking_uri)
        spec = self.comparison.spec
        parent = RunTracker.start(
            self.tracking,
            self.tracking.experiment_name,
            run_name=f"comparison {self.comparison.name}",
            tags={
                ROLE: "comparison",
                NAME_TAG: self.comparison.name,
                FINGERPRINT_TAG: self.comparison.fingerprint(),
                FIELDS_TAG: json.dumps(self.comparison.fields()),
                "comparison.variants": ", ".join(spec.variants),
                "mlflow.note.content": spec.description or f"comparison {self.comparison.name}",
            },
        )
        client.set_experiment_tag(parent.experiment_id, "mlflow.experimentKind", EXPERIMENT_KIND)
        parent.log_params(
            {
                "budget.trials": spec.budget.trials,
                "budget.timeout_s": spec.budget.timeout_s,
                "seeds": json.dumps(spec.seeds),
                "variants": ", ".join(spec.variants),
                "sampler": spec.sampler,
                "pruner": spec.pruner,
            }
        )
        parent.log_artifact(self.comparison.path, "comparison")
        return parent

    # -- tuning ------------------------------------------------------------------------
    def tuner(
        self,
        variant: str,
        folder: Path,
        n_trials: int | None,
        timeout: float | None,
        seed_offset: int = 0,
    ) -> VariantTuner:
        from pipeline.host.registry import default_registry

        spec = self.comparison.spec
        assert self.parent is not None
        options = TuneOptions(
            n_trials=n_trials,
            timeout=timeout,
            study_name=self.comparison.study_name(variant),
            storage=self.storage,
            sampler=spec.sampler,
            pruner=spec.pruner,
            seed=None if spec.sampler_seed is None else spec.sampler_seed + seed_offset,
            device=self.device,
        )
        return VariantTuner(
            self.comparison.write_variant(variant, folder),
            (),
            options,
            registry=default_registry(),
            tracking=self.tracking,
            echo=self.echo,
            comparison=self.comparison,
            variant=variant,
            parent_id=self.parent.run_id,
        )

    def budget_left(self, study) -> tuple[int | None, float | None] | None:
        """What is left of the tuning budget for ``study`` (None: not started): (trials,
        seconds), None for an unbounded part; None when it is spent (and says so)."""
        budget = self.comparison.spec.budget
        n_done, seconds = (0, 0.0) if study is None else spent(study)
        n_left = None if budget.trials is None else budget.trials - n_done
        t_left = None if budget.timeout_s is None else budget.timeout_s - seconds
        if (n_left is not None and n_left <= 0) or (t_left is not None and t_left <= 0):
            variant = study.user_attrs.get(STUDY_VARIANT_ATTR, study.study_name)
            self.echo(f"{variant}: tuning budget spent ({n_done} trials, {seconds:.1f} s)")
            return None
        return n_left, t_left

    def tune(
        self,
        variant: str,
        folder: Path,
        share: tuple[int | None, float | None] | None = None,
        seed_offset: int = 0,
    ):
        """Tune ``variant`` with what is left of its budget (or ``share`` of it, in a worker
        of ``--workers``, whose sampler is seeded ``sampler_seed + seed_offset``); returns
        (study, tuner). The budget is read from the study without joining it: a spent
        budget leaves the study and its run as they are."""
        study = self.open_study(variant)
        left = self.budget_left(study) if share is None else share
        tuner = self.tuner(variant, folder, *(left or (1, None)), seed_offset=seed_offset)
        if left is None:
            return study, tuner
        study = tuner.run()
        for trial in study.get_trials(deepcopy=False):  # an interrupted one had no callback
            tuner.tag_trial(trial)
        return study, tuner

    # -- seeds -------------------------------------------------------------------------
    def finished_seeds(self, variant: str, setting: str) -> set[int]:
        assert self.parent is not None
        client = client_for(self.tracking)
        runs = client.search_runs(
            [self.parent.experiment_id or client.get_run(self.parent.run_id).info.experiment_id],
            f"tags.`mlflow.parentRunId` = '{self.parent.run_id}' and tags.`{ROLE}` = 'seed' "
            f"and tags.`{VARIANT_TAG}` = '{variant}' and attributes.status = 'FINISHED'",
        )
        return {int(r.data.tags[SEED_TAG]) for r in runs if r.data.tags.get(SETTING_TAG) == setting}

    def seed_jobs(self, variant: str, study) -> list[SeedJob]:
        """The seed re-trainings of ``variant`` not finished yet: its untuned setting (with
        ``defaults: true``), then the study's best setting, on every seed."""
        jobs = []
        if self.comparison.spec.defaults:
            done = self.finished_seeds(variant, DEFAULT_SETTING)
            jobs += [
                SeedJob(variant, {}, DEFAULT_SETTING, None, seed)
                for seed in self.comparison.spec.seeds
                if seed not in done
            ]
        best = None if study is None else best_trial(study)
        if best is None:
            self.echo(f"{variant}: no completed trial, no seed re-training")
            return jobs
        setting = json.dumps(best.params, sort_keys=True)
        done = self.finished_seeds(variant, setting)
        return jobs + [
            SeedJob(variant, best.params, setting, best.number, seed)
            for seed in self.comparison.spec.seeds
            if seed not in done
        ]

    def retrain(self, variant: str, study, tuner: Tuner) -> None:
        """Train the study's best setting on every seed not finished yet (and, with
        ``defaults: true``, the variant's untuned setting as well)."""
        for job in self.seed_jobs(variant, study):
            self.train_seed(job, tuner)

    def train_seed(self, job: SeedJob, tuner: Tuner) -> None:
        """One seed re-training: an MLflow run under the comparison's parent."""
        from pipeline.experiment.config import apply_overrides, validate
        from pipeline.training.run import run_training

        assert self.parent is not None
        variant, params, setting, trial, seed = dataclasses.astuple(job)
        label = variant if trial is not None else f"{variant} default"
        tree = apply_overrides(tuner.space.apply(params), [f"train.seed={seed}"])
        exp = validate(tree, tuner.registry)
        self.on_phase(variant, "seed" if trial is not None else "default seed", seed)
        start = time.process_time()
        result = run_training(
            exp,
            tracking=self.tracking,
            progress=False,
            parent_run_id=self.parent.run_id,
            run_name=" · ".join(
                [variant, *([] if trial is not None else ["default"]), f"seed {seed}"]
            ),
            extra_tags={
                ROLE: "seed",
                NAME_TAG: self.comparison.name,
                VARIANT_TAG: variant,
                SEED_TAG: str(seed),
                SETTING_TAG: setting,
                "comparison.best_trial": "" if trial is None else str(trial),
            },
        )
        cpu = time.process_time() - start
        assert result.run_id is not None
        client_for(self.tracking).log_metric(result.run_id, "cpu_time_s", cpu, step=result.steps)
        shown = ", ".join(f"{k}={result.metrics[k]:.4g}" for k in self.comparison.spec.metrics)
        self.echo(f"{label} seed {seed}: {shown} ({result.wall_time_s:.1f} s)")

    # -- the whole invocation ------------------------------------------------------------
    def run(
        self, out_dir: Path, report_only: bool = False, workers: CompareWorkers | None = None
    ) -> Path:
        """Tune, re-train and report (or only report); returns the report's folder. With
        ``workers``, each variant's tuning and seeds run in worker processes."""
        from pipeline.compare.report import write_report

        if report_only:
            run_id = self.find_parent()
            if run_id is None:
                raise ConfigError(
                    "comparison", f"no runs of comparison {self.comparison.name!r} to report"
                )
            self.parent = RunTracker(client_for(self.tracking), run_id, self.tracking.tracking_uri)
            return write_report(self.record(), out_dir)
        with comparison_lock(self.comparison.name, self.storage, self.tracking):
            return self._run(out_dir, workers)

    def _run(self, out_dir: Path, workers: CompareWorkers | None) -> Path:
        from pipeline.compare.report import write_report

        self.parent = self.open_parent()
        status = "FAILED"
        try:
            with tempfile.TemporaryDirectory(prefix="gan-pipeline-compare-") as tmp:
                for variant in self.comparison.spec.variants:
                    self.echo(f"== {variant}: tuning ({self.comparison.study_name(variant)})")
                    self.on_phase(variant, "tuning", None)
                    if workers is None:
                        study, tuner = self.tune(variant, Path(tmp))
                        self.retrain(variant, study, tuner)
                    else:
                        workers.tune(variant, self.budget_left(self.open_study(variant)))
                        jobs = self.seed_jobs(variant, self.open_study(variant))
                        workers.retrain(variant, [(job_kind(job), job.seed) for job in jobs])
            self.on_phase("report", "writing", None)
            folder = write_report(self.record(), out_dir)
            status = "FINISHED"
        except KeyboardInterrupt:
            status = "KILLED"
            raise
        finally:
            self.parent.client.set_terminated(self.parent.run_id, status=status)
        return folder

    def record(self) -> ComparisonRecord:
        """What the report reads (data, not this runner): see :mod:`pipeline.compare.results`."""
        assert self.parent is not None
        return ComparisonRecord(
            comparison=self.comparison,
            experiments=self.experiments,
            tracking=self.tracking,
            parent=self.parent,
            studies={name: self.open_study(name) for name in self.experiments},
        )

    def run_worker(self, task: dict[str, Any], folder: Path) -> None:
        """One worker's part (``--worker JSON``), under the comparison's existing parent run."""
        run_id = self.find_parent()
        if run_id is None:
            raise ConfigError(
                "--worker", "the comparison has no parent run: start it without --worker"
            )
        self.parent = RunTracker(client_for(self.tracking), run_id, self.tracking.tracking_uri)
        variant = task["variant"]
        if variant not in self.comparison.spec.variants:
            raise ConfigError("--worker", f"no variant {variant!r} in the comparison")
        if task["task"] == "tune":
            self.tune(variant, folder, (task["trials"], task["timeout"]), seed_offset=task["index"])
            return
        probe = self.tuner(variant, folder, 1, None)  # its space and registry; not joined
        study = self.open_study(variant)
        wanted = {(kind, seed) for kind, seed in task["jobs"]}
        for job in self.seed_jobs(variant, study):
            if (job_kind(job), job.seed) in wanted:
                self.train_seed(job, probe)

    def open_study(self, variant: str):
        """The variant's study as it is now (None when it was never started)."""
        import optuna

        from pipeline.stores.storage import open_storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        store, _ = open_storage(self.storage, self.tracking, must_exist=False)
        try:
            return optuna.load_study(study_name=self.comparison.study_name(variant), storage=store)
        except KeyError:
            return None
