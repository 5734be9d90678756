"""`pipeline compare`: a tiny comparison end to end on real MLflow and Optuna stores.

2 variants × 2 trials × 2 seeds of 4 steps; stopped twice (during the tuning, then after
a seed) and rerun; the report's table read back and checked against the seed runs.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from pipeline.cli.commands import main
from pipeline.cli.ui_server import experiment_to_open, open_as_model_training
from pipeline.compare.file import load_comparison
from pipeline.compare.plots import bootstrap_best_so_far
from pipeline.compare.report import mean_se, objective_agreement
from pipeline.compare.runner import ComparisonRunner
from pipeline.errors import ConfigError
from pipeline.tracking.client import TrackingSettings
from tests.conftest import EXPERIMENTS, TINY_SMALL, W1_OBJECTIVE, interrupt_once_trials_start

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = {k: yaml.safe_load(v) for k, v in (o.split("=", 1) for o in TINY_SMALL if o != W1_OBJECTIVE)}
METRICS = ["w1", "reverse_kl", "modes"]
#: gan_ring8.yaml ranked by W1: four steps leave no sample near a mode, and the shipped
#: reverse_kl - hq_fraction would tie every trial (conftest.W1_OBJECTIVE)
W1_BASE = yaml.safe_load((EXPERIMENTS / "gan_ring8.yaml").read_text())
W1_BASE["tune"]["objective"] = {"metric": "w1", "direction": "minimize"}


def comparison_file(tmp_path: Path, **changes) -> Path:
    data = {
        "name": "tiny",
        "base": W1_BASE,
        "variants": {
            "gan": {"loss.name": "bce", "constraint.name": "none", **TINY},
            "sngan": {
                "overrides": {"loss.name": "hinge", "constraint.name": "spectral_norm", **TINY},
                "tune": {"optimizer.generator.lr": None},
            },
        },
        "budget": {"trials": 2},
        "seeds": 2,
        "defaults": True,
        "metrics": METRICS,
        "references": [
            {
                "name": "PacGAN4",
                "source": "Lin et al. 2018",
                "dataset": "ring8",
                "values": {"modes": 7.8, "reverse_kl": 0.07},
            },
        ],
    } | changes
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


class StopAt:
    """Records the lines the comparison prints; raises KeyboardInterrupt (a Ctrl-C) right
    after printing the line that starts with ``stop_at``."""

    def __init__(self, stop_at: str | None = None) -> None:
        self.stop_at = stop_at
        self.lines: list[str] = []

    def __call__(self, line: str) -> None:
        self.lines.append(line)
        if self.stop_at and line.startswith(self.stop_at):
            raise KeyboardInterrupt


def runner(tmp_path: Path, echo: StopAt, file: Path | None = None) -> ComparisonRunner:
    tracking = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_location=str(tmp_path / "artifacts"),
    )
    return ComparisonRunner(
        load_comparison(file or comparison_file(tmp_path)), tracking=tracking, echo=echo
    )


def parse_table(report: str, dataset: str) -> dict[str, list[str]]:
    section = report.split(f"## {dataset}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    cells = [[c.strip() for c in row.strip("|").split("|")] for row in rows]
    return {row[0]: row[1:] for row in cells[1:]}


def parse_cell(cell: str) -> tuple[float, float]:
    """A table cell ``mean ± se`` (bold or not); ``mean`` alone where the s.e. is 0."""
    mean, se = re.fullmatch(r"(\S+?)(?: ± (\S+))?", cell.strip("*")).groups()
    return float(mean), 0.0 if se is None else float(se)


def test_tiny_comparison_end_to_end_resumed(tmp_path):
    # 1: stopped (Ctrl-C) right after the first variant's first trial
    first = StopAt("trial    0")
    with pytest.raises(KeyboardInterrupt):
        runner(tmp_path, first).run(tmp_path / "out")
    # the stop came in gan's first trial: gan has 1 trial, sngan none
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    assert exp.tags.get("mlflow.experimentKind") == "custom_model_development"
    (parent,) = client.search_runs([exp.experiment_id], "tags.`pipeline.role` = 'comparison'")
    assert parent.info.status == "KILLED"

    # 2: rerun, stopped after sngan's first seed (seeds: 2 is seeds 1 and 2: after the
    # trials' seed 0)
    second = StopAt("sngan seed 1")
    with pytest.raises(KeyboardInterrupt):
        runner(tmp_path, second).run(tmp_path / "out")
    assert "trial    1" in "\n".join(second.lines)  # gan's second trial: its budget's rest
    assert sum(line.startswith("trial ") for line in second.lines) == 3  # 1 gan + 2 sngan

    # 3: rerun to the end: no tuning left, only sngan's seed 1 runs
    third = StopAt()
    last = runner(tmp_path, third)
    phases: list[tuple] = []
    last.on_phase = lambda *phase: phases.append(phase)  # what a progress bar is told
    folder = last.run(tmp_path / "out")
    assert not [line for line in third.lines if line.startswith("trial ")]
    assert [line.split(":")[0] for line in third.lines if " seed " in line] == ["sngan seed 2"]
    assert phases == [
        ("gan", "tuning", None), ("sngan", "tuning", None), ("sngan", "seed", 2),
        ("report", "writing", None),
    ]  # fmt: skip

    # the runs: one parent, a study run per variant under it, trials under the studies,
    # seeds under the parent; each trial and seed exactly once
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("pipeline.role") == "comparison"]
    assert parent.info.status == "FINISHED"
    studies = {
        r.data.tags["comparison.variant"]: r
        for r in runs
        if r.data.tags.get("pipeline.role") == "study"
    }
    assert set(studies) == {"gan", "sngan"}
    # a rerun whose budget is spent reads the study without joining it: no run left RUNNING
    assert {r.info.status for r in studies.values()} == {"FINISHED"}
    # seed runs by variant (the untuned setting's as "<variant> (default)") and seed
    seeds: dict[str, dict[int, object]] = {
        k: {} for k in ("gan", "sngan", "gan (default)", "sngan (default)")
    }
    for r in runs:
        tags = r.data.tags
        if tags.get("pipeline.role") == "study":
            assert tags["mlflow.parentRunId"] == parent.info.run_id
        elif tags.get("pipeline.role") == "trial":
            assert tags["mlflow.parentRunId"] == studies[tags["comparison.variant"]].info.run_id
        elif tags.get("pipeline.role") == "seed":
            assert tags["mlflow.parentRunId"] == parent.info.run_id
            seed = int(tags["comparison.seed"])
            row = tags["comparison.variant"]
            row += " (default)" if tags["comparison.setting"] == "default" else ""
            assert seed not in seeds[row], "a finished seed ran again"
            assert r.info.status == "FINISHED"
            seeds[row][seed] = r
    trials = [r for r in runs if r.data.tags.get("pipeline.role") == "trial"]
    assert sorted(r.data.tags["comparison.variant"] for r in trials) == ["gan"] * 2 + ["sngan"] * 2
    # every run has its role; the runs are named for their variant, the best trial says so
    assert {r.data.tags.get("pipeline.role") for r in runs} == {
        "comparison", "study", "trial", "seed"
    }  # fmt: skip
    for r in seeds["gan"].values():
        assert r.info.run_name == f"gan · seed {r.data.tags['comparison.seed']}"
    for r in seeds["sngan (default)"].values():
        assert r.info.run_name == f"sngan · default · seed {r.data.tags['comparison.seed']}"
    assert {v: sorted(s) for v, s in seeds.items()} == {v: [1, 2] for v in seeds}
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    )
    for variant in ("gan", "sngan"):
        study = optuna.load_study(study_name=f"tiny-{variant}", storage=storage)
        assert len(study.trials) == 2
        mine = {
            int(r.data.tags["optuna.trial_number"]): r
            for r in trials
            if r.data.tags["comparison.variant"] == variant
        }
        best_number = study.best_trial.number
        for number, r in mine.items():
            is_best = number == best_number
            assert r.info.run_name == f"{variant} · trial {number}" + (" (best)" if is_best else "")
            assert ("pipeline.best" in r.data.tags) == is_best
        # the seeds re-train the study's best setting; the defaults, the file's own
        setting = json.dumps(study.best_trial.params, sort_keys=True)
        assert {r.data.tags["comparison.setting"] for r in seeds[variant].values()} == {setting}
        lr = study.best_trial.params["optimizer.critic.lr"]
        assert {r.data.params["optimizer.critic.lr"] for r in seeds[variant].values()} == {str(lr)}
        defaults = seeds[f"{variant} (default)"].values()
        assert {r.data.params["optimizer.critic.lr"] for r in defaults} == {"0.0002"}

    # the report's table, read back: mean ± s.e. recomputed from the seed runs' metrics
    report = (folder / "report.md").read_text()
    for variant in ("gan", "sngan"):  # the objective's pick is the study's best trial
        best = optuna.load_study(study_name=f"tiny-{variant}", storage=storage).best_trial
        assert f"| {variant} | w1 | {best.number} | " in report
    table = parse_table(report, "ring8")
    assert set(table) == set(seeds) | {"*PacGAN4* (reference)"}
    data = json.loads((folder / "report.json").read_text())
    # the carry-over: the pick's value on its trial seed, tuned − default on the same new
    # seeds, recomputed from the seed runs
    assert "## Carry-over to new seeds" in report
    assert "Tuning beat the default on new seeds for " in report.split("## Carry-over")[1]
    for variant in ("gan", "sngan"):
        (item,) = [c for c in data["carry_over"] if c["variant"] == variant]
        study = optuna.load_study(study_name=f"tiny-{variant}", storage=storage)
        assert item["trial_value"] == study.best_value
        tuned, default = seeds[variant], seeds[f"{variant} (default)"]
        for metric in ("modes", "w1"):
            diffs = [
                tuned[s].data.metrics[metric] - default[s].data.metrics[metric] for s in (1, 2)
            ]
            paired = item["paired"][metric]
            assert paired["mean"] == pytest.approx(np.mean(diffs), abs=1e-12)
            better = sum(d < 0 for d in diffs) if metric == "w1" else sum(d > 0 for d in diffs)
            assert (paired["better"], paired["seeds"]) == (better, 2)
    for variant in seeds:
        row = table[variant]
        for i, metric in enumerate(METRICS):
            values = np.array([seeds[variant][s].data.metrics[metric] for s in (1, 2)])
            mean = values.mean()
            se = values.std(ddof=1) / math.sqrt(len(values))
            shown_mean, shown_se = parse_cell(row[i])
            # rounded to the s.e.'s first significant digit (4 significant digits at s.e. 0)
            unit = 10 ** math.floor(math.log10(se)) if se > 0 else 0.0
            assert shown_mean == pytest.approx(mean, rel=5e-4, abs=unit / 2 + 1e-12)
            assert shown_se == pytest.approx(se, abs=unit / 2 + 1e-12)
            # the best mean of the column in bold, by the metric's direction
            means = {v: np.mean([seeds[v][s].data.metrics[metric] for s in (1, 2)]) for v in seeds}
            pick = max if metric in ("modes", "hq_fraction") else min
            assert row[i].startswith("**") == (mean == pick(means.values())), (metric, row[i])
            (entry,) = [v for v in data["variants"] if v["name"] == variant]
            assert entry["stats"][metric] == pytest.approx([mean, se], rel=1e-12, abs=1e-15)
        assert row[len(METRICS)] == "2"  # seeds
        assert row[len(METRICS) + 1] == ("—" if "default" in variant else "2/0/0")  # trials
    assert table["*PacGAN4* (reference)"][:3] == ["—", "0.07", "7.8"]
    # the w1 values differ between seeds here, so the s.e. check above is not of zeros
    assert seeds["gan"][1].data.metrics["w1"] != seeds["gan"][2].data.metrics["w1"]
    for name in ("metrics_over_seeds.png", "best_so_far.png", "samples_gan.png"):
        assert (folder / name).stat().st_size > 1000
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "report")}
    assert "report/report.md" in logged and "report/best_so_far.png" in logged

    # --report-only rebuilds the same table from the stores, running nothing
    n_runs = len(runs)
    (folder / "report.md").unlink()
    result = CliRunner().invoke(
        main,
        [
            "compare",
            str(tmp_path / "tiny.yaml"),
            "--report-only",
            "--out",
            str(tmp_path / "out"),
            "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
        ],
    )
    assert result.exit_code == 0, result.output
    assert parse_table((folder / "report.md").read_text(), "ring8") == table
    assert len(client.search_runs([exp.experiment_id], max_results=1000)) == n_runs

    # `pipeline best` finds the comparison as it finds a study: each variant's best trial
    result = CliRunner().invoke(
        main, ["best", "tiny", "--json", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    )
    assert result.exit_code == 0, result.output
    best = json.loads(result.stdout)
    assert best["comparison"] == "tiny" and set(best["variants"]) == {"gan", "sngan"}
    for variant in ("gan", "sngan"):
        study = optuna.load_study(study_name=f"tiny-{variant}", storage=storage)
        assert best["variants"][variant]["best_params"] == study.best_trial.params
        assert best["variants"][variant]["parent_run_id"] == studies[variant].info.run_id

    # `pipeline ui` finds it by comparison or study name, in the model-training view, with
    # the objective and key metrics as columns of its runs table
    assert experiment_to_open(client, "tiny") == exp.experiment_id
    assert experiment_to_open(client, "tiny-sngan") == exp.experiment_id
    assert experiment_to_open(client, "nothing-of-that-name") is None
    path = open_as_model_training(client, exp.experiment_id)
    assert path.startswith(f"#/experiments/{exp.experiment_id}/runs?workflowType=machine_learning")
    key = path.rsplit("viewStateShareKey=", 1)[1]
    view = json.loads(
        client.get_experiment(exp.experiment_id).tags[f"mlflow.sharedViewState.{key}"]
    )
    assert view["orderByKey"] == "metrics.`w1`"  # the studies' objective
    for metric in METRICS:
        assert f"metrics.`{metric}`" in view["selectedColumns"]
    assert "tags.`comparison.variant`" in view["selectedColumns"]
    assert view["runsExpanded"] == {parent.info.run_id: True}

    # a changed file is refused, naming the field, and runs nothing
    changed = comparison_file(tmp_path, budget={"trials": 3})
    with pytest.raises(ConfigError, match="budget differ"):
        runner(tmp_path, StopAt(), changed).run(tmp_path / "out")
    assert len(client.search_runs([exp.experiment_id], max_results=1000)) == n_runs


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"seeds": 0}, "seeds"),
        ({"budget": {}}, "budget"),
        ({"variants": {"bad": {"loss.name": "nope"}}}, "variants.bad.loss.name"),
        ({"metrics": ["fid"]}, "metrics"),
        ({"base": "missing.yaml"}, "base"),
    ],
)
def test_bad_comparison_file_names_the_field(tmp_path, change, field):
    path = comparison_file(tmp_path, **change)
    result = CliRunner().invoke(
        main, ["compare", str(path), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    )
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {field}:"), result.output
    assert not (tmp_path / "mlflow.db").exists()  # refused before anything was created


@pytest.mark.parametrize(
    ("override", "field"),
    [("train.stepz=300", "-o train.stepz"), ("loss.name=nope", "-o loss.name")],
)
def test_a_bad_override_is_blamed_on_the_o_not_the_file(tmp_path, override, field):
    # one variant that sets neither key: the -o is at fault, not the file
    path = comparison_file(tmp_path, variants={"gan": {"constraint.name": "none", **TINY}})
    result = CliRunner().invoke(
        main,
        ["compare", str(path), "-o", override, "--tracking-uri", f"sqlite:///{tmp_path}/m.db"],
    )
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {field}:"), result.output
    assert "variants." not in result.output
    assert not (tmp_path / "m.db").exists()


def test_two_workers_share_each_variants_trials_and_seeds(tmp_path):
    """``--workers 2`` through the CLI, in real processes: each study gets its 3 trials
    (2 + 1) from two samplers, every seed re-training runs exactly once, the seeds re-train
    the whole study's best setting, and the parent ends FINISHED with the report."""
    import os
    import subprocess
    import sys

    path = comparison_file(tmp_path, budget={"trials": 3})
    result = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "compare", str(path), "--workers", "2",
         "--out", str(tmp_path / "out"), "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "gan: 2 workers (trials each: 2, 1)" in out
    assert "gan: 4 seed re-trainings in 2 workers" in out
    assert "[worker 1] trial" in out and "[worker 1] sngan" in out
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    )
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    (parent,) = [r for r in runs if r.data.tags.get("pipeline.role") == "comparison"]
    assert parent.info.status == "FINISHED"
    assert {r.info.status for r in runs} == {"FINISHED"}  # the studies' runs too
    for variant in ("gan", "sngan"):
        study = optuna.load_study(study_name=f"tiny-{variant}", storage=storage)
        assert sorted(t.number for t in study.trials) == [0, 1, 2]
        assert {t.state.name for t in study.trials} == {"COMPLETE"}
        best = json.dumps(study.best_trial.params, sort_keys=True)
        seeds = sorted(
            (r.data.tags["comparison.setting"] == "default", int(r.data.tags["comparison.seed"]))
            for r in runs
            if r.data.tags.get("pipeline.role") == "seed"
            and r.data.tags["comparison.variant"] == variant
        )
        assert seeds == [(False, 1), (False, 2), (True, 1), (True, 2)]
        tuned = {
            r.data.tags["comparison.setting"]
            for r in runs
            if r.data.tags.get("pipeline.role") == "seed"
            and r.data.tags["comparison.variant"] == variant
            and r.data.tags["comparison.setting"] != "default"
        }
        assert tuned == {best}
    assert (tmp_path / "out" / "tiny" / "report.md").exists()


@pytest.mark.slow
def test_ctrl_c_stops_every_compare_worker_and_the_parent_is_killed(tmp_path):
    import os
    import subprocess
    import sys

    long = TINY | {"train.steps": 100000, "train.eval_every": 50, "train.eval_samples": 200}
    path = comparison_file(tmp_path, variants={"gan": long}, budget={"trials": 4})
    proc = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "compare", str(path), "--workers", "2",
         "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env=os.environ | {"OMP_NUM_THREADS": "1"},
    )  # fmt: skip
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    )
    out = interrupt_once_trials_start(proc, "tiny-gan", storage)
    assert proc.returncode == 130, out
    assert "rerun the same command to continue" in out
    study = optuna.load_study(study_name="tiny-gan", storage=storage)
    assert sorted(t.state.name for t in study.trials) == ["FAIL", "FAIL"], out
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name("tiny")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    (parent,) = [r for r in runs if r.data.tags.get("pipeline.role") == "comparison"]
    assert parent.info.status == "KILLED"
    running = [
        (r.data.tags.get("pipeline.role"), r.info.run_name)
        for r in runs
        if r.info.status == "RUNNING"
    ]
    assert not running, (running, out)


def test_report_cells_are_rounded_to_the_se_and_the_best_is_bold_by_hand():
    from pipeline.compare.results import VariantResult
    from pipeline.compare.table import metric_cells

    def row(name: str, stats: dict[str, tuple[float, float]]) -> VariantResult:
        r = VariantResult(name, "grid25", "w1", "minimize")
        r.stats, r.directions = stats, {"modes": "maximize", "reverse_kl": "minimize"}
        return r

    rows = [
        row("gan", {"modes": (23.456, 1.7), "reverse_kl": (0.123456, 0.0234)}),
        row("sngan", {"modes": (24.9, 0.26), "reverse_kl": (0.2, 0.0)}),
        row("gan (default)", {"modes": (12.0, math.nan)}),
    ]
    rows[2].directions = {}  # a default row: the column's direction comes from the others
    cells = metric_cells(rows, ["modes", "reverse_kl"])
    # s.e. 1.7 → units, 0.26 → tenths, 0.0234 → hundredths; s.e. 0 or NaN: 4 digits alone
    assert cells["gan"] == ["23 ± 2", "**0.12 ± 0.02**"]  # reverse KL: lower is better
    assert cells["sngan"] == ["**24.9 ± 0.3**", "0.2"]  # modes: more is better
    assert cells["gan (default)"] == ["12", "—"]


def test_bootstrap_best_so_far_by_hand():
    # one resample of a 3-trial pool: each curve is a running minimum of draws from it
    curves = bootstrap_best_so_far([3.0, None, 1.0], maximize=False, resamples=50)
    assert curves.shape == (50, 3)
    finite = curves[~np.isnan(curves)]
    assert set(np.unique(finite)) <= {1.0, 3.0}
    assert (np.diff(np.nan_to_num(curves, nan=1e9), axis=1) <= 0).all()
    assert mean_se([1.0, 3.0]) == (2.0, 1.0)  # s.d. √2, /√2


def test_objective_agreement_by_hand():
    rows = [{"w1": w, "modes": 5 - w, "reverse_kl": w * w, "hq": 0.5} for w in (1.0, 2.0, 3.0, 4.0)]
    rows[0]["modes"], rows[1]["modes"] = 3.0, 4.0  # modes ranks 2,1,3,4 reversed: 3,4,2,1
    rho = objective_agreement(rows, "w1", ["modes", "reverse_kl", "hq", "w1"])
    # Spearman: 1 - 6 Σd² / (n(n²-1)); modes ranks (3,4,2,1) vs (1,2,3,4): Σd² = 4+4+1+9 = 18
    assert rho["modes"] == pytest.approx(1 - 6 * 18 / (4 * 15))
    assert rho["reverse_kl"] == pytest.approx(1.0)
    assert math.isnan(rho["hq"]) and math.isnan(rho["w1"])  # a constant; the objective itself
    assert math.isnan(objective_agreement(rows[:2], "w1", ["modes"])["modes"])  # < 3 trials
    # a weighted objective, reverse_kl - modes = w² - 5 + w rising in w like w1 itself,
    # except rows 0/1 (modes 3, 4): 1-3 = -2, 4-4 = 0, 9-2 = 7, 16-1 = 15 — still rising
    combined = objective_agreement(rows, {"reverse_kl": 1.0, "modes": -1.0}, ["w1", "modes"])
    assert combined["w1"] == pytest.approx(1.0)
    assert combined["modes"] == pytest.approx(rho["modes"])


def test_trial_picks_by_hand():
    from pipeline.compare.report import VariantResult, trial_picks

    rows = [
        (0, {"w1": 1.0, "modes": 3.0, "reverse_kl": 0.5}),
        (1, {"w1": 2.0, "modes": 8.0, "reverse_kl": 0.1}),
        (2, {"w1": 0.5, "modes": 8.0, "reverse_kl": 0.3}),
        (3, {"w1": float("nan"), "modes": 1.0, "reverse_kl": 2.0}),
    ]
    res = VariantResult("gan", "ring8", "w1", "minimize")
    directions = {"modes": "maximize", "reverse_kl": "minimize"}
    picks = trial_picks(rows, res, ["modes", "reverse_kl"], directions)
    # w1 (NaN skipped) picks trial 2; modes ties 1 and 2 at 8: the earlier; reverse KL: 1
    assert [(label, n) for label, n, _ in picks] == [("w1", 2), ("modes", 1), ("reverse_kl", 1)]
    combined = VariantResult(
        "gan", "ring8", "reverse_kl - modes", "minimize", {"reverse_kl": 1.0, "modes": -1.0}
    )
    # reverse_kl - modes: -2.5, -7.9, -7.7, 1.0 (trial 3's w1 is not in it): trial 1
    assert trial_picks(rows, combined, [], directions)[0][:2] == ("reverse_kl - modes", 1)


#: the comparison files shipped in experiments/
SHIPPED = sorted(
    p.name for p in EXPERIMENTS.glob("*.yaml") if "variants" in yaml.safe_load(p.read_text())
)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_comparison_files_load(name):
    from pipeline.compare.file import check_variants

    assert len(SHIPPED) >= 2
    comparison = load_comparison(EXPERIMENTS / name)
    experiments = check_variants(comparison)
    assert set(experiments) == {"gan", "wgan_clip", "wgan_gp", "sngan", "pacgan2", "pacgan4"}
    constraints = {v: e.plugins["constraint"].info.name for v, e in experiments.items()}
    assert constraints == {
        "gan": "none",
        "wgan_clip": "weight_clipping",
        "wgan_gp": "gradient_penalty",
        "sngan": "spectral_norm",
        "pacgan2": "none",
        "pacgan4": "none",
    }
    packs = {v: e.resolved["model"]["pack"] for v, e in experiments.items()}
    assert packs == {"gan": 1, "wgan_clip": 1, "wgan_gp": 1, "sngan": 1, "pacgan2": 2, "pacgan4": 4}
    for exp in experiments.values():  # PacGAN's generator and 3×200 critic
        model = exp.resolved["model"]
        assert (model["g_width"], model["g_depth"], model["g_batch_norm"]) == (400, 4, True)
        assert (model["d_width"], model["d_depth"]) == (200, 3)
    assert {r.name for r in comparison.spec.references} >= {"VEEGAN", "PacGAN4"}


def test_new_seeds_come_after_every_seed_a_trial_trained_on():
    """seeds: 5 with tune.seeds 3 and train.seed 0: the trials trained on 0, 1 and 2, so
    the re-trainings are seeds 3..7 (one seed per trial: 1..5)."""
    file = EXPERIMENTS / "compare_losses_ring8.yaml"
    assert load_comparison(file).spec.seeds == [1, 2, 3, 4, 5]
    three = load_comparison(file, ["train.seed=0", "tune.seeds=3"])
    assert three.spec.seeds == [3, 4, 5, 6, 7]


def test_metrics_over_seeds_tells_defaults_from_tuned_rows(tmp_path):
    import matplotlib.image

    from pipeline.compare.plots import metrics_over_seeds
    from pipeline.compare.results import SeedRun, VariantResult

    def row(name: str, w1: list[float], default: bool) -> VariantResult:
        r = VariantResult(name, "ring8", "w1", "minimize", default=default)
        r.seeds = [SeedRun(s, "run", {"w1": v}, 1.0, 1.0) for s, v in enumerate(w1)]
        r.stats = {"w1": mean_se(w1)}
        return r

    def orange(path: Path) -> int:  # tab:orange, the untuned defaults' triangles
        rgb = matplotlib.image.imread(path)[:, :, :3]
        r, g, b = rgb[:, :, 0], rgb[:, :, 1], rgb[:, :, 2]
        return int(((r > 0.9) & (g > 0.35) & (g < 0.65) & (b < 0.3)).sum())

    tuned = row("gan", [0.3, 0.32, 0.29], False)
    both = metrics_over_seeds(
        [tuned, row("gan (default)", [0.4, 0.45], True)], ["w1"], tmp_path / "a.png"
    )
    alone = metrics_over_seeds([tuned], ["w1"], tmp_path / "b.png")
    assert orange(alone) == 0 and orange(both) > 20


def test_compare_bar_shows_variant_phase_and_seed():
    import io

    from pipeline.cli.progress import CompareBar

    drawn = io.StringIO()
    bar = CompareBar(["gan", "sngan"], file=drawn)
    bar.phase("gan", "tuning")
    bar.phase("sngan", "default seed", 2)
    shown = drawn.getvalue()
    assert "sngan" in shown and "1/2" in shown and "default seed 2" in shown
    bar.phase("report", "writing")
    bar.close()
    assert "2/2" in drawn.getvalue() and bar.bar is None
