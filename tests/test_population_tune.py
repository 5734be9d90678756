"""`pipeline tune --population K`: real Optuna journal storage, real MLflow store, tiny
budgets. A population tune asks the same trials as a one-at-a-time tune of the same
sampler seed (random sampler: values depend only on the order of asks), and each member
gives its trial the value the single trial gives, within the tolerance of
``tests/test_population.py``."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from pipeline.cli.commands import main
from pipeline.errors import ConfigError
from pipeline.tracking.client import TrackingSettings
from pipeline.tuning.population.tune import PopulationTuner, expected_critic_work
from pipeline.tuning.tuner import TuneOptions, Tuner
from tests.conftest import EXPERIMENTS, TINY_SMALL
from tests.test_tune import PruneTrialNumber

pytestmark = pytest.mark.usefixtures("one_thread")

#: relative tolerance of a member's objective against its single trial's
TOL = 1e-4


def make_tuner(tmp_path: Path, n_trials: int, lines: list[str], file: str, **options) -> Tuner:
    from pipeline.host.registry import default_registry

    tracking = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_location=str(tmp_path / "artifacts"),
    )
    return Tuner(
        EXPERIMENTS / file,
        TINY_SMALL,
        TuneOptions(n_trials=n_trials, seed=0, sampler="random", **options),
        registry=default_registry(),
        tracking=tracking,
        echo=lines.append,
    )


def children(tmp_path: Path, name: str):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=100)
    return client, [r for r in runs if "mlflow.parentRunId" in r.data.tags]


def test_population_tune_gives_each_trial_its_single_value_and_run(tmp_path):
    lines: list[str] = []
    study = PopulationTuner(make_tuner(tmp_path / "pop", 4, lines, "wgan_gp_grid25.yaml"), 2).run()
    single = make_tuner(tmp_path / "one", 4, [], "wgan_gp_grid25.yaml").run()
    got = {t.number: t for t in study.trials}
    want = {t.number: t for t in single.trials}
    assert sorted(got) == sorted(want) == [0, 1, 2, 3]
    for n, trial in want.items():
        assert got[n].state == optuna.trial.TrialState.COMPLETE
        assert got[n].params == trial.params
        assert abs(got[n].value - trial.value) <= TOL * max(1.0, abs(trial.value))
    client, runs = children(tmp_path / "pop", "wgan_gp_grid25")
    assert len(runs) == 4
    for run in runs:
        assert run.info.status == "FINISHED"
        assert run.data.tags["pipeline.record"] == "trial"
        assert run.data.tags["population.size"] == "2"
        assert run.data.tags["optuna.state"] == "COMPLETE"
        n = int(run.data.params["trial.number"])
        assert got[n].user_attrs["mlflow_run_id"] == run.info.run_id
        assert run.data.metrics["w1"] == pytest.approx(got[n].value)
        assert {"loss/critic", "penalty", "grad_norm/critic", "steps_per_s"} <= set(
            run.data.metrics
        )
        files = {a.path for a in client.list_artifacts(run.info.run_id)}
        assert {"config.yaml", "samples", "per_step_metrics.csv", "checkpoint"} <= files
        samples = {a.path for a in client.list_artifacts(run.info.run_id, "samples")}
        assert samples >= {"samples/step_0000002.npy", "samples/step_0000004.npy"}
    assert any("population of 2 (of 2) trials: 0, 1" in line for line in lines)


def test_a_pruned_member_frees_its_slot_for_the_next_trial(tmp_path):
    lines: list[str] = []
    tuner = make_tuner(tmp_path, 3, lines, "wgan_gp_grid25.yaml")
    tuner.pruner = PruneTrialNumber(1)
    study = PopulationTuner(tuner, 2).run()
    states = {t.number: t.state.name for t in study.trials}
    assert states == {0: "COMPLETE", 1: "PRUNED", 2: "COMPLETE"}
    assert study.trials[1].user_attrs["pruned_at_step"] == 2
    _, runs = children(tmp_path, "wgan_gp_grid25")
    status = {int(r.data.params["trial.number"]): r.info.status for r in runs}
    assert status == {0: "FINISHED", 1: "KILLED", 2: "FINISHED"}
    # trial 2 joined the running population: only one population was started
    assert sum("population of" in line for line in lines) == 1


def test_trials_of_other_structures_wait_for_their_own_population(tmp_path):
    lines: list[str] = []
    study = PopulationTuner(
        make_tuner(tmp_path, 5, lines, "compare_constraints_grid25.yaml"), 4
    ).run()
    assert len(study.trials) == 5
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    starts = [line for line in lines if line.startswith("population of")]
    names = {t.params["constraint.name"] for t in study.trials}
    assert len(starts) == len(names)  # one population per constraint sampled
    for name in names:
        assert sum(f"constraint.name={name}" in line for line in starts) == 1


def test_a_trial_without_population_form_trains_one_at_a_time(tmp_path):
    lines: list[str] = []
    tuner = make_tuner(tmp_path, 2, lines, "gan_ring8.yaml")  # generator batch norm
    study = PopulationTuner(tuner, 2).run()
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert sum("one at a time (model.g_batch_norm" in line for line in lines) == 2


def test_population_with_n_jobs_is_refused(tmp_path):
    tuner = make_tuner(tmp_path, 2, [], "wgan_gp_grid25.yaml", n_jobs=2)
    with pytest.raises(ConfigError, match="--population"):
        PopulationTuner(tuner, 2)


def test_expected_critic_work_of_a_searched_n_critic():
    # by hand: {1, 2} twice: E[max] = 1.75 (only 1,1 has max 1), mean 1.5
    assert expected_critic_work([1, 2], 2) == pytest.approx(1.75 / 1.5)
    assert expected_critic_work([3], 8) == 1.0  # one value: no masked steps
    assert expected_critic_work(list(range(1, 11)), 1) == pytest.approx(1.0)
    # 8 members over 1-10: E[max] = 10 - sum((j/10)^8) = 9.3225..., mean 5.5
    assert expected_critic_work(list(range(1, 11)), 8) == pytest.approx(
        (10 - sum((j / 10) ** 8 for j in range(1, 10))) / 5.5
    )


def test_cli_population_option(tmp_path):
    args = ["tune", str(EXPERIMENTS / "wgan_gp_grid25.yaml"), "--n-trials", "2"]
    args += ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    for o in TINY_SMALL:
        args += ["-o", o]
    runner = CliRunner()
    with runner.isolated_filesystem(temp_dir=tmp_path):  # MLflow's ./mlartifacts lands here
        result = runner.invoke(main, [*args, "--population", "2"])
        assert result.exit_code == 0, result.output
        assert "populations of 2 trials" in result.output
        on_cpu = not torch.cuda.is_available()  # the file's device is auto
        assert ("note: on CPU a population pays only when" in result.output) == on_cpu
        # the file searches n_critic over 1-10: E[max of 2] = 10 - sum((j/10)^2, j<10) = 7.15
        # against a mean of 5.5, 1.30x the critic work
        assert "train.n_critic is searched (1-10)" in result.output
        assert "about 1.30x the critic work" in result.output
        bad = runner.invoke(main, [*args, "--population", "0"])
    assert bad.exit_code == 2 and "--population: must be ≥ 1" in bad.output


def test_ctrl_c_leaves_no_trial_running_and_no_run_open(tmp_path):
    from tests.test_tune import InterruptTrialNumber

    tuner = make_tuner(tmp_path, 4, [], "wgan_gp_grid25.yaml")
    tuner.pruner = InterruptTrialNumber(1)
    population = PopulationTuner(tuner, 2)
    with pytest.raises(KeyboardInterrupt):
        population.run()
    states = {t.number: t.state.name for t in population.study.trials}
    assert states == {0: "FAIL", 1: "FAIL"}
    client, runs = children(tmp_path, "wgan_gp_grid25")
    assert {r.info.status for r in runs} == {"KILLED"} and len(runs) == 2
    parent = client.get_run(runs[0].data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"
