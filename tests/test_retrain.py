"""``pipeline retrain``: a study's best setting trained again on new seeds, mean ± s.e.
Real Optuna journal, real MLflow SQLite store, real trainings on tiny budgets."""

from __future__ import annotations

import json
import math

import pytest
from click.testing import CliRunner
from mlflow import MlflowClient

from pipeline.cli.commands import main
from pipeline.errors import ConfigError
from pipeline.tuning.retrain import mean_se, parse_seeds
from tests.conftest import EXPERIMENTS, TINY_SMALL

FILE = str(EXPERIMENTS / "gan_ring8.yaml")


def overrides(*extra: str) -> list[str]:
    return [a for o in (*TINY_SMALL, *extra) for a in ("-o", o)]


def test_seeds_are_read_as_ranges_and_lists_and_refused_naming_the_option():
    assert parse_seeds("1-5") == [1, 2, 3, 4, 5]
    assert parse_seeds("3,1,2-4,10") == [3, 1, 2, 4, 10]
    for bad in ("", "a", "5-1", "1-", "-3"):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_mean_and_standard_error_by_hand():
    # mean 3; sample variance ((1-3)² + (2-3)² + (6-3)²) / 2 = 7; s.e. √(7/3)
    mean, se = mean_se([1.0, 2.0, 6.0])
    assert mean == 3.0 and se == pytest.approx(math.sqrt(7 / 3), rel=1e-12)
    assert mean_se([0.5]) == (0.5, 0.0)


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    """A 2-trial study of gan_ring8 on tiny budgets, two seeds per trial."""
    folder = tmp_path_factory.mktemp("retrain")
    uri = f"sqlite:///{folder}/mlflow.db"
    args = ["tune", FILE, "--n-trials", "2", "--seed", "0", "--tracking-uri", uri]
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        result = CliRunner().invoke(main, [*args, *overrides("tune.seeds=2")])
    assert result.exit_code == 0, result.output
    return folder, uri


def retrain(folder, uri, *args: str):
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        command = ["retrain", FILE, "--tracking-uri", uri, *overrides("tune.seeds=2"), *args]
        return CliRunner().invoke(main, command)


def retrain_runs(uri: str) -> list:
    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(experiments, "tags.`pipeline.role` = 'retrain'")


@pytest.mark.slow
def test_the_best_setting_is_trained_on_each_new_seed_and_summarised(tuned):
    import optuna

    folder, uri = tuned
    result = retrain(folder, uri, "--seeds", "1-3", "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    study = optuna.load_study(study_name="gan_ring8", storage=_journal(folder))
    best = study.best_trial
    assert summary["trial"] == best.number and summary["params"] == best.params
    assert summary["trial_value"] == best.value

    runs = {int(r.data.tags["retrain.seed"]): r for r in retrain_runs(uri)}
    assert sorted(runs) == [1, 2, 3]
    parent = study.user_attrs["mlflow_parent_run_id"]
    for seed, run in runs.items():
        assert run.info.status == "FINISHED"
        assert run.data.tags["mlflow.parentRunId"] == parent
        assert run.data.tags["retrain.trial"] == str(best.number)
        assert run.data.params["train.seed"] == str(seed)
        for key, value in best.params.items():  # the trial's setting, not the file's
            assert float(run.data.params[key]) == pytest.approx(value)
    # the summary is the runs' own final metrics, their mean and s.e. by hand
    for name in ("w1", "modes", "hq_fraction", "reverse_kl"):
        values = [runs[s].data.metrics[name] for s in (1, 2, 3)]
        assert [summary["seeds"][str(s)][name] for s in (1, 2, 3)] == values
        assert summary["mean_se"][name]["mean"] == pytest.approx(sum(values) / 3)
        assert summary["mean_se"][name]["se"] == pytest.approx(mean_se(values)[1])
    objective = [runs[s].data.metrics["w1"] for s in (1, 2, 3)]  # gan_ring8 tunes by w1
    assert [summary["seeds"][str(s)]["objective"] for s in (1, 2, 3)] == objective
    assert len(summary["trial_seeds"]) == 2  # the trial's own two seeds, with their objective
    for metrics in summary["trial_seeds"].values():
        assert metrics["objective"] == metrics["w1"]
    client = MlflowClient(uri)
    logged = {a.path for a in client.list_artifacts(parent, "retrain")}
    assert logged == {f"retrain/trial_{best.number}.json"}

    # asked again with one more seed: only seed 4 trains; the table shows all four
    again = retrain(folder, uri, "--seeds", "1-4")
    assert again.exit_code == 0, again.output
    assert len(retrain_runs(uri)) == 4
    assert "seed 4:" in again.stdout and "seed 1:" not in again.stdout
    assert again.stdout.count("\n4 ") == 1 and "mean " in again.stdout


@pytest.mark.slow
def test_worker_processes_share_the_seeds_without_training_one_twice(tuned):
    folder, uri = tuned
    before = len(retrain_runs(uri))
    result = retrain(folder, uri, "--seeds", "20-22", "--workers", "2", "--trial", "0")
    assert result.exit_code == 0, result.output
    assert "3 seeds in 2 workers: 20,22; 21" in result.stdout
    seeds = [int(r.data.tags["retrain.seed"]) for r in retrain_runs(uri)]
    assert sorted(s for s in seeds if s >= 20) == [20, 21, 22]
    assert len(retrain_runs(uri)) == before + 3


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "field"),
    [
        (["--seeds", "x"], "--seeds"),
        (["--seeds", "1", "--trial", "9"], "--trial"),
        (["--seeds", "1", "--study-name", "nope"], "--study-name"),
        (["--seeds", "1", "-o", "train.batch_size=64"], "--study-name"),  # not the tuned file
    ],
)
def test_bad_input_is_refused_naming_the_option_and_trains_nothing(tuned, args, field):
    folder, uri = tuned
    before = len(retrain_runs(uri))
    result = retrain(folder, uri, *args)
    assert result.exit_code == 2, result.output
    assert field in result.output
    assert len(retrain_runs(uri)) == before


def _journal(folder):
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    return JournalStorage(JournalFileBackend(str(folder / "optuna.journal")))
