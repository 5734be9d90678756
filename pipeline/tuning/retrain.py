"""``pipeline retrain``: a study's best setting trained again on new seeds.

What a tune hands back is one trial's setting, judged on the seeds it was tuned on; the
pick is optimistic (the winner's curse: the best of n noisy trials is partly luck).
Lucic et al. 2018 ("Are GANs Created Equal?") and Kurach et al. 2019 judge a setting by
training it again on new seeds and reporting mean ± standard error; this command does that
for any study: the best trial's parameters (or ``--trial N``'s) applied to the experiment
file the study was tuned with, trained once per seed of ``--seeds``.

Each seed is an MLflow run under the study's parent run (``pipeline.role=retrain``, tags
``retrain.trial``, ``retrain.seed``, ``retrain.setting``); a seed whose run FINISHED with
the same setting is not trained again, so an interrupted retrain resumes and a finished one
only reports. The summary (each seed's metrics and objective, mean ± s.e., and the trial's
objective on its own trial seeds beside its mean on the new ones) is printed and logged to
the parent run as ``retrain/trial_<n>.json``.
"""

from __future__ import annotations

import json
import math
import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.experiment.config import apply_overrides, validate
from pipeline.tracking.client import ROLE_TAG, TrackingSettings, client_for
from pipeline.tuning.report import best_trial
from pipeline.tuning.study_config import check_same_config
from pipeline.tuning.tuner import PARENT_ATTR, Tuner

ROLE = "retrain"
TRIAL_TAG, SEED_TAG, SETTING_TAG = "retrain.trial", "retrain.seed", "retrain.setting"


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``1-5``, ``1,2,7`` or both (``1-3,10``), in order, without repeats."""
    seeds: list[int] = []
    for part in text.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\s*-\s*(\d+))?\s*", part)
        low, high = (int(match[1]), int(match[2] or match[1])) if match else (1, 0)
        if high < low:
            raise ConfigError("--seeds", f"give seeds like 1-5 or 1,2,7 (got {text!r})")
        seeds += [s for s in range(low, high + 1) if s not in seeds]
    return seeds


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / √k; 0 for one)."""
    k = len(values)
    mean = sum(values) / k
    var = sum((v - mean) ** 2 for v in values) / (k - 1) if k > 1 else 0.0
    return mean, math.sqrt(var / k)


@dataclass
class Retrain:
    """One ``pipeline retrain`` invocation on a study tuned from ``tuner``'s file."""

    tuner: Tuner
    trial_number: int | None = None
    echo: Callable[[str], None] = print

    def __post_init__(self) -> None:
        import optuna

        from pipeline.stores.storage import parse_storage

        if self.tuner.tracking is None:
            raise ConfigError("--tracking-uri", "retrain records its runs: give a tracking store")
        self.tracking: TrackingSettings = self.tuner.tracking
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        location = parse_storage(self.tuner.options.storage, self.tracking)
        location.check(must_exist=True)
        name = self.tuner.study_name
        try:
            self.study = optuna.load_study(study_name=name, storage=location.open())
        except KeyError:
            raise ConfigError(
                "--study-name", f"no study {name!r} in {location.url}: tune it first"
            ) from None
        base = {k: v for k, v in self.tuner.base_experiment.flat_params().items()}
        base.pop("train.device", None)
        check_same_config(self.study, name, base, self.tuner.space.spec.model_dump(mode="json"))
        self.trial = self._pick()
        self.parent_id = self.study.user_attrs.get(PARENT_ATTR)
        if not self.parent_id:
            raise ConfigError("--study-name", f"study {name!r} has no MLflow parent run")
        self.setting = json.dumps(self.trial.params, sort_keys=True)

    def _pick(self):
        import optuna

        if self.trial_number is None:
            trial = best_trial(self.study)
            if trial is None:
                raise ConfigError(
                    "--trial", f"study {self.tuner.study_name!r} has no complete trial"
                )
            return trial
        trials = self.study.get_trials(deepcopy=False)
        if not 0 <= self.trial_number < len(trials):
            raise ConfigError(
                "--trial", f"no trial {self.trial_number} (the study has {len(trials)})"
            )
        trial = trials[self.trial_number]
        if trial.state != optuna.trial.TrialState.COMPLETE:
            raise ConfigError(
                "--trial", f"trial {trial.number} is {trial.state.name}, not COMPLETE"
            )
        return trial

    # -- runs --------------------------------------------------------------------------
    def finished(self) -> dict[int, Any]:
        """This setting's FINISHED retrain runs, by seed (the newest one of a seed)."""
        client = client_for(self.tracking)
        experiment = client.get_run(self.parent_id).info.experiment_id
        runs = client.search_runs(
            [experiment],
            f"tags.`mlflow.parentRunId` = '{self.parent_id}' and tags.`{ROLE_TAG}` = '{ROLE}' "
            f"and attributes.status = 'FINISHED'",
            order_by=["attributes.start_time ASC"],
        )
        return {
            int(r.data.tags[SEED_TAG]): r
            for r in runs
            if r.data.tags.get(SETTING_TAG) == self.setting
        }

    def train(self, seeds: list[int], progress: bool = True) -> None:
        """Train every seed of ``seeds`` that has no FINISHED run of this setting."""
        from pipeline.training.run import run_training

        done = self.finished()
        for seed in seeds:
            if seed in done:
                continue
            tree = apply_overrides(
                self.tuner.space.apply(self.trial.params), [f"train.seed={seed}"]
            )
            exp = validate(tree, self.tuner.registry)
            result = run_training(
                exp,
                tracking=self.tracking,
                progress=progress,
                parent_run_id=self.parent_id,
                run_name=f"trial {self.trial.number} · seed {seed}",
                extra_tags={
                    ROLE_TAG: ROLE,
                    TRIAL_TAG: str(self.trial.number),
                    SEED_TAG: str(seed),
                    SETTING_TAG: self.setting,
                },
            )
            shown = ", ".join(f"{m.name}={result.metrics[m.name]:.4g}" for m in exp.metrics)
            self.echo(f"seed {seed}: {shown} ({result.wall_time_s:.0f} s)")

    # -- summary -----------------------------------------------------------------------
    def summary(self, seeds: list[int]) -> dict[str, Any]:
        """Each seed's metrics and objective, mean ± s.e., beside the trial's own value."""
        space = self.tuner.space
        names = [m.name for m in self.tuner.base_experiment.metrics]
        done = self.finished()
        missing = [s for s in seeds if s not in done]
        by_seed = {s: {n: done[s].data.metrics[n] for n in names} for s in seeds if s in done}
        for metrics in by_seed.values():
            metrics["objective"] = space.value(metrics)
        columns = [*names, "objective"]
        stats = (
            {
                c: dict(zip(("mean", "se"), mean_se([m[c] for m in by_seed.values()]), strict=True))
                for c in columns
            }
            if by_seed
            else {}
        )
        return {
            "study": self.tuner.study_name,
            "trial": self.trial.number,
            "params": self.trial.params,
            "objective": space.metric,
            "direction": space.direction,
            "trial_value": self.trial.value,
            "trial_seeds": {
                s: {**m, "objective": space.value(m)} if set(names) <= set(m) else m
                for s, m in (self.trial.user_attrs.get("seed_metrics") or {}).items()
            },
            "seeds": {str(s): m for s, m in by_seed.items()},
            "missing": missing,
            "mean_se": stats,
            "runs": {str(s): done[s].info.run_id for s in by_seed},
        }

    def log(self, summary: dict[str, Any]) -> None:
        """The summary as ``retrain/trial_<n>.json`` on the study's parent run."""
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"trial_{self.trial.number}.json"
            path.write_text(json.dumps(summary, indent=2))
            client_for(self.tracking).log_artifact(self.parent_id, str(path), "retrain")


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as a table for the terminal."""
    columns = [*summary["mean_se"]] or ["objective"]
    lines = [
        f"study {summary['study']}, trial {summary['trial']}: "
        + ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in summary["params"].items()
        ),
        f"{summary['objective']} ({summary['direction']}) on the trial's own seeds: "
        f"{summary['trial_value']:.4g}",
        "seed  " + "  ".join(f"{c:>14}" for c in columns),
    ]
    for seed, metrics in summary["seeds"].items():
        lines.append(f"{seed:<4}  " + "  ".join(f"{metrics[c]:>14.4g}" for c in columns))
    if summary["mean_se"]:
        cells = [f"{s['mean']:.4g} ± {s['se']:.2g}" for s in summary["mean_se"].values()]
        lines.append("mean  " + "  ".join(f"{c:>14}" for c in cells))
    trial_seeds = summary["trial_seeds"] or {}
    if trial_seeds and summary["mean_se"]:  # the trial's own seeds (tune.seeds > 1)
        own = [c for c in columns if all(c in m for m in trial_seeds.values())]
        means = {c: mean_se([m[c] for m in trial_seeds.values()])[0] for c in own}
        lines.append(
            "trial "
            + "  ".join(f"{means[c]:>14.4g}" if c in means else f"{'':>14}" for c in columns)
            + f"   (its seeds {', '.join(trial_seeds)})"
        )
    if summary["missing"]:
        lines.append(f"not trained yet: seeds {', '.join(str(s) for s in summary['missing'])}")
    return lines
