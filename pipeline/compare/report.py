"""The report of ``pipeline compare``: a table per dataset and the plots, logged to the
comparison's parent run.

One row per variant: mean ± standard error over the seed re-trainings of each metric
(Lucic et al. 2018, "Are GANs Created Equal?", report the spread over seeds of each
model's best setting; Kurach et al. 2019 re-train each setting on 5 seeds; PacGAN reports
mean ± s.e. over 10 trials), the tuned setting, the trials and the CPU time spent, with
the reference rows of the comparison file beside them. Plots: :mod:`pipeline.compare.plots`.
``report.json`` holds the same numbers unrounded.
"""

from __future__ import annotations

import json
import math
import shutil
import statistics
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

from pipeline.compare.carryover import CarryOver, SeedMetrics, carry_over, markdown_lines
from pipeline.compare.results import ComparisonRecord, SeedRun, VariantResult, objective_value
from pipeline.compare.table import metric_cells
from pipeline.experiment.names import path_inside
from pipeline.tuning.report import best_trial
from pipeline.tuning.search_space import ObjectiveSpec

__all__ = ["SeedRun", "VariantResult", "collect", "objective_value", "write_report"]


def mean_se(values: list[float]) -> tuple[float, float]:
    """Mean and standard error of the mean (sample standard deviation / √n; NaN for n=1)."""
    mean = statistics.fmean(values)
    se = statistics.stdev(values) / math.sqrt(len(values)) if len(values) > 1 else math.nan
    return mean, se


def collect(record: ComparisonRecord) -> list[VariantResult]:
    """Each variant's study and seed runs, as they are in the stores now."""
    from pipeline.compare.tuner import DEFAULT_SETTING, NAME_TAG, ROLE, VARIANT_TAG
    from pipeline.tracking.client import client_for

    client = client_for(record.tracking)
    parent_id = record.parent.run_id
    experiment_id = client.get_run(parent_id).info.experiment_id
    seed_runs = client.search_runs(
        [experiment_id],
        f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`{ROLE}` = 'seed' "
        f"and attributes.status = 'FINISHED'",
        max_results=10000,
    )
    trial_runs = client.search_runs(
        [experiment_id],
        f"tags.`{ROLE}` = 'trial' and tags.`{NAME_TAG}` = '{record.comparison.name}' "
        f"and attributes.status = 'FINISHED'",
        max_results=10000,
    )
    wanted = set(record.comparison.spec.seeds)
    metrics = record.comparison.spec.metrics
    results = []
    for name, exp in record.experiments.items():
        spec = ObjectiveSpec.model_validate(
            (record.comparison.variant_tree(name).get("tune") or {}).get("objective") or {}
        )
        study = record.studies.get(name)
        res = VariantResult(
            name,
            exp.resolved["dataset"]["name"],
            spec.label(),
            study.direction.name.lower() if study is not None else spec.direction or "minimize",
            spec.weights(),
        )
        if study is not None:
            _read_study(res, study)
        _add_seeds(res, seed_runs, json.dumps(res.setting, sort_keys=True), wanted, metrics)
        if record.comparison.spec.defaults:
            default = VariantResult(
                f"{name} (default)",
                res.dataset,
                res.objective,
                res.direction,
                res.weights,
                default=True,
            )
            _add_seeds(default, seed_runs, DEFAULT_SETTING, wanted, metrics)
            results.append(default)
        ours = [r for r in trial_runs if r.data.tags.get(VARIANT_TAG) == name]
        res.agreement = objective_agreement([r.data.metrics for r in ours], res.weights, metrics)
        numbered = [(int(r.data.tags.get("optuna.trial_number", -1)), r.data.metrics) for r in ours]
        directions = {m.name: m.cls.direction for m in exp.metrics}
        res.directions = directions
        res.picks = trial_picks(numbered, res, metrics, directions)
        results.append(res)
    return results


def trial_picks(
    rows: list[tuple[int, dict[str, float]]],
    res: VariantResult,
    metrics: list[str],
    directions: dict[str, str],
) -> list[tuple[str, int, dict[str, float]]]:
    """The trial the objective picks, then the trial each metric would pick (by its own
    direction), from the trials' final metrics (``rows``: trial number, metrics): whether
    the objective picks what one would pick by the columns of the table."""
    weights = res.weights or {res.objective: 1.0}
    keys = [(res.objective, weights, res.direction == "maximize")]
    keys += [(m, {m: 1.0}, directions.get(m) == "maximize") for m in metrics]
    picks = []
    for label, w, maximize in keys:
        scored = []
        for number, values in rows:
            v = objective_value(values, w)
            if v is not None and math.isfinite(v):
                scored.append((v if maximize else -v, -number, number, values))
        if scored:
            _, _, number, values = max(scored, key=lambda t: t[:2])  # ties: the earlier trial
            picks.append((label, number, values))
    return picks


def objective_agreement(
    rows: list[dict[str, float]], objective: str | dict[str, float], metrics: list[str]
) -> dict[str, float]:
    """Spearman's rank correlation between the tuning objective and each metric over the
    variant's finished trials (``rows``: each trial's final metrics; NaN with fewer than 3
    trials, or a constant column): whether
    minimizing sliced W1 also selects the settings with the most modes, the highest
    high-quality share and the lowest reverse KL (measured-here.md: an objective can rank a
    collapsed generator among the best)."""
    from scipy.stats import spearmanr

    weights = objective if isinstance(objective, dict) else {objective: 1.0}
    out = {}
    for metric in metrics:
        pairs = [
            (objective_value(m, weights), m[metric])
            for m in rows
            if objective_value(m, weights) is not None and metric in m
        ]
        if len(pairs) < 3 or weights == {metric: 1.0}:
            out[metric] = math.nan
            continue
        x, y = zip(*pairs, strict=True)
        if len(set(x)) < 2 or len(set(y)) < 2:
            out[metric] = math.nan
            continue
        out[metric] = float(spearmanr(x, y).statistic)
    return out


def _add_seeds(
    res: VariantResult, seed_runs: list, setting: str, wanted: set[int], metrics: list[str]
) -> None:
    """The FINISHED seed runs of ``res``'s variant with ``setting``, one per wanted seed,
    and their mean ± s.e. per metric."""
    from pipeline.compare.tuner import SEED_TAG, SETTING_TAG, VARIANT_TAG

    variant = res.name.removesuffix(" (default)")
    for run in seed_runs:
        tags = run.data.tags
        if tags.get(VARIANT_TAG) != variant or tags.get(SETTING_TAG) != setting:
            continue
        seed = int(tags[SEED_TAG])
        if seed not in wanted or any(s.seed == seed for s in res.seeds):
            continue
        m = run.data.metrics
        res.seeds.append(
            SeedRun(
                seed,
                run.info.run_id,
                dict(m),
                m.get("wall_time_s", math.nan),
                m.get("cpu_time_s", math.nan),
            )
        )
    res.seeds.sort(key=lambda s: s.seed)
    for metric in metrics:
        values = [s.metrics[metric] for s in res.seeds if metric in s.metrics]
        if values:
            res.stats[metric] = mean_se(values)


def _read_study(res: VariantResult, study) -> None:
    from pipeline.stores import dead_trials

    res.trials = dead_trials.state_counts(study)
    res.direction = study.direction.name.lower()
    for t in study.get_trials(deepcopy=False):
        res.values.append(t.value if t.state.name == "COMPLETE" else None)
        if t.duration is not None:
            res.tuning_wall_s += t.duration.total_seconds()
        res.tuning_cpu_s += float(t.user_attrs.get("cpu_time_s", 0.0))
    best = best_trial(study)
    if best is not None:
        res.best_value = best.value
        res.setting = dict(best.params)


def _setting(setting: dict[str, Any]) -> str:
    parts = [f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items()]
    return ", ".join(parts) or "—"


def markdown(record: ComparisonRecord, results: list[VariantResult], plots: list[str]) -> str:
    """The report as markdown: a table per dataset, reference rows beside, then the plots."""
    spec = record.comparison.spec
    metrics = spec.metrics
    b = spec.budget
    budget = " and ".join(
        x
        for x in (
            f"{b.trials} trials" if b.trials else "",
            f"{b.timeout_s:g} s" if b.timeout_s else "",
        )
        if x
    )
    lines = [f"# Comparison `{spec.name}`", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [
        f"Each variant tuned with the same budget ({budget}, sampler {spec.sampler}, pruner "
        f"{spec.pruner}), its best setting re-trained on seeds {spec.seeds}; cells are mean ± "
        f"standard error over the seeds (Lucic et al. 2018; Kurach et al. 2019), rounded to "
        f"the standard error's first significant digit, the best of each column in bold. CPU "
        f"time is the process time of the tuning trials and of the seed re-trainings.",
        "",
    ]
    lines += carryover_lines(results, metrics)
    head = [
        "variant",
        *metrics,
        "seeds",
        "trials (done/pruned/failed)",
        "tuning CPU s",
        "seeds CPU s",
        "tuned setting",
    ]
    for dataset in dict.fromkeys(r.dataset for r in results):
        lines += [f"## {dataset}", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        rows = [r for r in results if r.dataset == dataset]
        cells = metric_cells(rows, metrics)
        for r in rows:
            t = r.trials
            trials = f"{t.get('COMPLETE', 0)}/{t.get('PRUNED', 0)}/{t.get('FAIL', 0)}"
            if r.default:
                trials = "—"
            row = [
                r.name,
                *cells[r.name],
                str(len(r.seeds)),
                trials,
                "—" if r.default else f"{r.tuning_cpu_s:.1f}",
                f"{r.seed_cpu_s:.1f}",
                "untuned (the file's)" if r.default else _setting(r.setting),
            ]
            lines.append("| " + " | ".join(row) + " |")
        for ref in spec.references:
            if ref.dataset not in (None, dataset):
                continue
            vals = [str(ref.values.get(m, "—")) for m in metrics]
            row = [f"*{ref.name}* (reference)", *vals, "", "", "", "", ref.source]
            lines.append("| " + " | ".join(row) + " |")
        lines.append("")
    lines += _agreement_table(results, metrics)
    lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    return "\n".join(lines)


def carry_overs(results: list[VariantResult], metrics: list[str]) -> list[CarryOver]:
    """Each tuned variant's carry-over to the new seeds, against its default's rows
    (:mod:`pipeline.compare.carryover`)."""
    defaults = {r.name.removesuffix(" (default)"): r for r in results if r.default}
    items = []
    for r in results:
        if r.default:
            continue
        default = defaults.get(r.name)

        def by_seed(res: VariantResult) -> SeedMetrics:
            return SeedMetrics({s.seed: s.metrics for s in res.seeds})

        items.append(
            carry_over(
                r.name,
                r.objective,
                r.direction,
                r.weights or {r.objective: 1.0},
                r.best_value,
                by_seed(r),
                None if default is None else by_seed(default),
                r.directions,
                metrics,
            )
        )
    return items


def carryover_lines(results: list[VariantResult], metrics: list[str]) -> list[str]:
    """The report's first section: does each tuned setting hold on the new seeds?"""
    items = carry_overs(results, metrics)
    if not items:
        return []
    return ["## Carry-over to new seeds", "", *markdown_lines(items, metrics)]


def _agreement_table(results: list[VariantResult], metrics: list[str]) -> list[str]:
    """What the objective rewards: Spearman's ρ between it and each metric over the trials."""
    rows = [r for r in results if not r.default and r.agreement]
    if not rows:
        return []
    objective = rows[0].objective
    lines = [
        "## What the objective rewards",
        "",
        f"Spearman's ρ between the tuning objective ({objective}, "
        f"{rows[0].direction}d) and each metric over each variant's finished trials. "
        f"Where it is minimized, it selects the settings with more modes and a higher "
        f"high-quality share only where ρ is negative for them, and positive for reverse KL "
        f"(the signs flip where it is maximized); —: fewer than 3 trials or a constant.",
        "",
        "| variant | " + " | ".join(metrics) + " |",
        "|" + "---|" * (len(metrics) + 1),
    ]
    for r in rows:
        cells = ["—" if math.isnan(r.agreement.get(m, math.nan)) else f"{r.agreement[m]:+.2f}"
                 for m in metrics]  # fmt: skip
        lines.append(f"| {r.name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The trial the objective picks, and the trial each metric would pick on its own "
        "(the trials' final metrics, on the trials' seed): where the rows differ, the "
        "objective trades that metric away.",
        "",
        "| variant | picked by | trial | " + " | ".join(metrics) + " |",
        "|" + "---|" * (len(metrics) + 3),
    ]
    for r in rows:
        for label, number, values in r.picks:
            cells = [f"{values[m]:.4g}" if m in values else "—" for m in metrics]
            lines.append(f"| {r.name} | {label} | {number} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def write_report(record: ComparisonRecord, out_dir: Path) -> Path:
    """Write ``report.md``, ``report.json`` and the plots into ``out_dir/<name>/`` and log
    that folder to the parent run (``report/``); returns the folder."""
    from pipeline.compare.plots import best_so_far, median_samples, metrics_over_seeds

    folder = path_inside(out_dir, record.comparison.name)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    results = collect(record)
    metrics = record.comparison.spec.metrics
    plots = [
        metrics_over_seeds(results, metrics, folder / "metrics_over_seeds.png").name,
        best_so_far(results, folder / "best_so_far.png").name,
    ]
    with tempfile.TemporaryDirectory(prefix="gan-pipeline-report-") as tmp:
        plots += [p.name for p in median_samples(record, results, folder, Path(tmp))]
    (folder / "report.md").write_text(markdown(record, results, plots))
    (folder / "report.json").write_text(
        json.dumps(
            {
                "comparison": record.comparison.name,
                "variants": [asdict(r) for r in results],
                "carry_over": [asdict(c) for c in carry_overs(results, metrics)],
            },
            indent=2,
        )
    )
    record.parent.client.log_artifacts(record.parent.run_id, str(folder), "report")
    return folder
