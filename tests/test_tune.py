"""`pipeline tune`: real Optuna storage, real MLflow store, tiny budgets."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

import matplotlib
import mlflow.pytorch
import optuna
import pytest
import yaml
from click.testing import CliRunner
from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from pipeline.cli.commands import main
from pipeline.errors import ConfigError
from pipeline.tracking.client import TrackingSettings
from pipeline.tracking.generator_model import fluent_tracking_uri
from pipeline.tuning.tuner import TuneOptions, Tuner
from tests.conftest import EXPERIMENTS, TINY_SMALL


class PruneTrialNumber(optuna.pruners.BasePruner):
    """A real Optuna pruner that prunes one chosen trial at its first report."""

    def __init__(self, number: int) -> None:
        self.number = number

    def prune(self, study, trial) -> bool:
        return trial.number == self.number


class InterruptTrialNumber(optuna.pruners.BasePruner):
    """A real Optuna pruner that stops the tune like Ctrl-C at one trial's first report."""

    def __init__(self, number: int) -> None:
        self.number = number

    def prune(self, study, trial) -> bool:
        if trial.number == self.number:
            raise KeyboardInterrupt
        return False


def make_tuner(
    tmp_path: Path,
    n_trials: int,
    *,
    n_jobs: int = 1,
    pruned: int | None = None,
    file: str = "wgan_gp_grid25.yaml",
    lines: list[str] | None = None,
    extra: list[str] | None = None,
) -> Tuner:
    tracking = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_location=str(tmp_path / "artifacts"),
    )
    from pipeline.host.registry import default_registry

    tuner = Tuner(
        EXPERIMENTS / file,
        [*TINY_SMALL, *(extra or [])],
        TuneOptions(n_trials=n_trials, seed=0, n_jobs=n_jobs),
        registry=default_registry(),
        tracking=tracking,
        echo=(lines if lines is not None else []).append,
    )
    if pruned is not None:
        tuner.pruner = PruneTrialNumber(pruned)
    return tuner


def load(tmp_path: Path) -> optuna.Study:
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    )
    return optuna.load_study(study_name="wgan_gp_grid25", storage=storage)


def runs_of(tmp_path: Path, name: str = "wgan_gp_grid25"):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.get_experiment_by_name(name)
    runs = client.search_runs([exp.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("pipeline.role") == "study"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    return client, parents, children


class SixTrials(NamedTuple):
    """A study of six trials as it stood right after them."""

    folder: Path
    trials: list[optuna.trial.FrozenTrial]
    best: optuna.trial.FrozenTrial
    client: MlflowClient
    parent: Run
    children: list[Run]
    lines: list[str]


@pytest.fixture(scope="module")
def six_trials(tmp_path_factory) -> SixTrials:
    """Six trials of one study, the third pruned at its first report, run once for the
    module in a folder of its own (the journal lands beside it)."""
    folder = tmp_path_factory.mktemp("six_trials")
    lines: list[str] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        make_tuner(folder, 6, pruned=2, lines=lines).run()
    study = load(folder)
    client, parents, children = runs_of(folder)
    assert len(parents) == 1
    return SixTrials(folder, study.trials, study.best_trial, client, parents[0], children, lines)


@pytest.fixture(scope="module")
def resumed(six_trials: SixTrials) -> tuple[Path, optuna.Study]:
    """The same study after a second ``tune`` of two more trials: the folder and the study."""
    folder = six_trials.folder
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(folder)
        make_tuner(folder, 2).run()
    return folder, load(folder)


@pytest.mark.slow
def test_six_trials_land_in_the_optuna_journal(six_trials):
    trials = six_trials.trials
    assert (six_trials.folder / "optuna.journal").exists()
    assert len(trials) == 6
    states = [t.state.name for t in trials]
    assert states.count("PRUNED") == 1 and states[2] == "PRUNED"
    assert states.count("COMPLETE") == 5
    for t in trials:
        assert 1 <= t.params["train.n_critic"] <= 10
        assert 0.01 <= t.params["constraint.weight"] <= 100
    assert trials[2].user_attrs["pruned_at_step"] == 2
    assert any("PRUNED" in line and "at step 2" in line for line in six_trials.lines)
    best = six_trials.best
    assert f"best trial {best.number}: figures and generator logged" in "\n".join(six_trials.lines)


@pytest.mark.slow
def test_each_trial_is_a_child_run_with_its_params_state_and_artifacts(six_trials):
    trials, children = six_trials.trials, six_trials.children
    assert len(children) == 6
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {six_trials.parent.info.run_id}
    by_number = {int(c.data.tags["optuna.trial_number"]): c for c in children}
    assert sorted(by_number) == list(range(6))
    best, client = six_trials.best, six_trials.client
    for number, child in by_number.items():
        t = trials[number]
        assert child.data.tags["optuna.state"] == t.state.name
        assert child.data.params["train.n_critic"] == str(t.params["train.n_critic"])
        assert float(child.data.params["constraint.weight"]) == pytest.approx(
            t.params["constraint.weight"]
        )
        assert float(child.data.params["trial.constraint.weight"]) == pytest.approx(
            t.params["constraint.weight"]
        )
        assert "loss/critic" in child.data.metrics and "w1" in child.data.metrics
        arts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert {"config.yaml", "samples"} <= arts
        if t.state.name == "COMPLETE":
            assert child.info.status == "FINISHED"
            assert child.data.metrics["w1"] == pytest.approx(t.value)
            assert {"samples.npy", "per_step_metrics.csv", "checkpoint"} <= arts
            # a trial keeps its evaluation samples; the best one also gets its figures
            # and generator when the tune ends (pipeline.training.trial_record)
            kept = {a.path for a in client.list_artifacts(child.info.run_id, "samples")}
            npy = {"samples/step_0000002.npy", "samples/step_0000004.npy"}
            png = {p.replace(".npy", ".png") for p in npy}
            is_best = number == best.number
            assert kept == (npy | png if is_best else npy)
            assert ("loss_curves.png" in arts) == is_best
            assert (child.data.tags.get("pipeline.completed") == "true") == is_best
        else:
            assert child.info.status == "KILLED"
            assert child.data.tags["optuna.pruned_at_step"] == "2"


@pytest.mark.slow
def test_the_best_trial_run_is_tagged_and_named_and_every_run_has_its_role(six_trials):
    best = six_trials.best
    for child in six_trials.children:
        number = int(child.data.tags["optuna.trial_number"])
        assert child.data.tags["pipeline.role"] == "trial"
        is_best = number == best.number
        assert child.data.tags.get("pipeline.best") == ("true" if is_best else None)
        assert child.info.run_name == f"trial {number}" + (" (best)" if is_best else "")
    assert six_trials.parent.info.run_name == "study wgan_gp_grid25"
    # the best changed during the study: the mark moved off an earlier best
    done = [t for t in six_trials.trials if t.state.name == "COMPLETE"]
    assert done[0].number != best.number


def test_the_best_mark_moves_to_the_new_best_and_leaves_the_old_one(tmp_path):
    from pipeline.tuning.best_mark import move_best_mark

    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    exp = client.create_experiment("marks", artifact_location=str(tmp_path / "a"))
    parent = client.create_run(exp, run_name="study s").info.run_id
    a, b, other = (
        client.create_run(exp, run_name=f"trial {i}", tags={"mlflow.parentRunId": parent})
        for i in range(3)
    )
    stranger = client.create_run(exp, run_name="trial 9", tags={"pipeline.best": "true"})
    assert move_best_mark(client, parent, a.info.run_id)
    assert not move_best_mark(client, parent, a.info.run_id)  # already marked: no change
    assert client.get_run(a.info.run_id).info.run_name == "trial 0 (best)"
    assert move_best_mark(client, parent, b.info.run_id)  # another worker's trial is best
    old, new = client.get_run(a.info.run_id), client.get_run(b.info.run_id)
    assert "pipeline.best" not in old.data.tags and old.info.run_name == "trial 0"
    assert new.data.tags["pipeline.best"] == "true" and new.info.run_name == "trial 1 (best)"
    assert "pipeline.best" not in client.get_run(other.info.run_id).data.tags
    # a run under another parent keeps its own mark
    assert client.get_run(stranger.info.run_id).data.tags["pipeline.best"] == "true"


@pytest.mark.slow
def test_the_parent_run_names_the_best_trial_with_plots_and_a_table(six_trials):
    parent, best, client = six_trials.parent, six_trials.best, six_trials.client
    assert parent.data.tags["best.trial"] == str(best.number)
    assert parent.data.metrics["best_value"] == pytest.approx(best.value)
    assert float(parent.data.tags["best.param.constraint.weight"]) == pytest.approx(
        best.params["constraint.weight"]
    )
    parent_arts = {a.path for a in client.list_artifacts(parent.info.run_id, "plots")}
    for plot in ("optimization_history", "param_importances", "contour"):
        assert f"plots/{plot}.html" in parent_arts and f"plots/{plot}.png" in parent_arts
    assert "trials.csv" in {a.path for a in client.list_artifacts(parent.info.run_id)}


@pytest.mark.slow
def test_a_second_tune_adds_trials_to_the_study_under_the_same_parent(six_trials, resumed):
    parent_id = six_trials.parent.info.run_id
    folder, study = resumed
    assert len(study.trials) == 8
    _, parents, children = runs_of(folder)
    assert [p.info.run_id for p in parents] == [parent_id] and len(children) == 8
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parent_id}


def optuna_cli(folder: Path, command: str):
    """``optuna COMMAND`` on the study's journal, its YAML output read back."""
    exe = os.path.join(os.path.dirname(sys.executable), "optuna")
    journal = str(folder / "optuna.journal")
    args = [exe, command, "--storage", journal, "--study-name", "wgan_gp_grid25", "-f", "yaml"]
    return yaml.safe_load(subprocess.run(args, capture_output=True, text=True, check=True).stdout)


@pytest.mark.slow
def test_optunas_own_command_reads_the_study(resumed):
    folder, study = resumed
    assert len(optuna_cli(folder, "trials")) == 8
    assert optuna_cli(folder, "best-trial")["number"] == study.best_trial.number


@pytest.mark.slow
def test_pipeline_best_names_the_best_trial_and_its_run(resumed, monkeypatch):
    folder, study = resumed
    monkeypatch.chdir(folder)  # the journal is found beside the working directory
    uri = f"sqlite:///{folder}/mlflow.db"
    result = CliRunner().invoke(main, ["best", "wgan_gp_grid25", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    best = study.best_trial
    _, parents, children = runs_of(folder)
    (run,) = [c for c in children if c.data.tags["optuna.trial_number"] == str(best.number)]
    assert f"best trial {best.number}: w1 = " in result.output
    assert f"MLflow run {run.info.run_id} (parent {parents[0].info.run_id})" in result.output
    assert f"generator: runs:/{run.info.run_id}/generator" in result.output


@pytest.mark.slow
def test_pipeline_best_of_a_complete_study_does_not_import_mlflow(resumed):
    """The tune's end logged the best trial's generator and said so in the study, so
    `pipeline best` answers from the Optuna storage alone (MLflow's import is ~2 s)."""
    folder, study = resumed
    best_run = study.best_trial.user_attrs["mlflow_run_id"]
    assert study.user_attrs["generator_logged_run"] == best_run
    probe = (
        "import sys\n"
        "from click.testing import CliRunner\n"
        "from pipeline.cli.commands import main\n"
        f"result = CliRunner().invoke(main, ['best', 'wgan_gp_grid25', '--tracking-uri', "
        f"'sqlite:///{folder}/mlflow.db'])\n"
        "print(result.exit_code, 'mlflow' in sys.modules)\n"
        "print(result.output)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=folder, capture_output=True, text=True, check=True
    ).stdout
    assert out.splitlines()[0] == "0 False", out
    assert f"generator: runs:/{best_run}/generator" in out


@pytest.mark.slow
def test_best_gives_the_best_trial_of_an_interrupted_tune_its_figures_and_generator(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    tuner = make_tuner(tmp_path, 3)
    tuner.pruner = InterruptTrialNumber(1)
    with pytest.raises(KeyboardInterrupt):
        tuner.run()
    best = load(tmp_path).best_trial
    assert best.number == 0
    run_id = best.user_attrs["mlflow_run_id"]
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    assert "pipeline.completed" not in client.get_run(run_id).data.tags  # the tune never ended

    command = ["best", "wgan_gp_grid25", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    assert f"best trial 0: figures and generator logged to run {run_id}" in result.stderr
    assert f"generator: runs:/{run_id}/generator" in result.stdout
    assert client.get_run(run_id).data.tags["pipeline.completed"] == "true"
    assert "loss_curves.png" in {a.path for a in client.list_artifacts(run_id)}
    assert {a.path for a in client.list_artifacts(run_id, "samples")} == {
        f"samples/step_000000{s}.{ext}" for s in (2, 4) for ext in ("npy", "png")
    }
    with fluent_tracking_uri(f"sqlite:///{tmp_path}/mlflow.db"):
        assert mlflow.pytorch.load_model(f"runs:/{run_id}/generator") is not None

    # asked again, it only reports
    again = CliRunner().invoke(main, [*command, "--json"])
    assert again.exit_code == 0 and again.stderr == ""
    assert json.loads(again.stdout)["best_model_uri"] == f"runs:/{run_id}/generator"


@pytest.mark.slow
def test_two_workers_make_distinct_trials_under_one_parent(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_tuner(tmp_path, 4, n_jobs=2).run()
    study = load(tmp_path)
    assert len(study.trials) == 4
    _, parents, children = runs_of(tmp_path)
    assert len(parents) == 1 and len(children) == 4
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}
    assert len({c.data.tags["optuna.trial_number"] for c in children}) == 4
    assert len({t.user_attrs["mlflow_run_id"] for t in study.trials}) == 4
    (marked,) = [c for c in children if c.data.tags.get("pipeline.best") == "true"]
    assert marked.info.run_id == study.best_trial.user_attrs["mlflow_run_id"]


@pytest.mark.slow
def test_two_processes_join_one_study(tmp_path):
    exe = os.path.join(os.path.dirname(sys.executable), "pipeline")
    args = [
        exe,
        "tune",
        str(EXPERIMENTS / "wgan_gp_grid25.yaml"),
        "--n-trials",
        "2",
        "--tracking-uri",
        f"sqlite:///{tmp_path}/mlflow.db",
    ]
    for o in TINY_SMALL:
        args += ["-o", o]
    first = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
    assert first.returncode == 0, first.stdout + first.stderr
    procs = [
        subprocess.Popen(
            args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        for _ in range(2)
    ]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    study = load(tmp_path)
    assert [t.number for t in study.trials] == list(range(6))
    _, parents, children = runs_of(tmp_path)
    assert len(parents) == 1 and len(children) == 6
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {parents[0].info.run_id}


def space_file(tmp_path: Path, params: dict, objective: dict | None = None) -> Path:
    data = yaml.safe_load((EXPERIMENTS / "wgan_gp_grid25.yaml").read_text())
    data["tune"] = {"params": params} | ({"objective": objective} if objective else {})
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


BAD_SPACES = [
    (
        {"train.bogus": {"type": "int", "low": 1, "high": 3}},
        "tune.params.train.bogus",
        "unknown key",
    ),
    (
        {"train.n_critic": {"type": "int", "low": 5, "high": 1}},
        "tune.params.train.n_critic",
        "low (5.0) > high (1.0)",
    ),
    (
        {"constraint.weight": {"type": "float", "low": 0, "high": 1, "log": True}},
        "tune.params.constraint.weight",
        "log scale needs low > 0",
    ),
    (
        {"constraint.weight": {"type": "float", "low": -1, "high": 1}},
        "tune.params.constraint.weight",
        "greater than or equal to 0",
    ),
    (
        {"loss.name": {"type": "categorical", "choices": ["wgan", "no_such_loss"]}},
        "tune.params.loss.name",
        "unknown loss 'no_such_loss'",
    ),
    (
        {"train.n_critic": {"type": "integer", "low": 1, "high": 3}},
        "tune.params.train.n_critic",
        "type",
    ),
    (
        {
            "constraint.clip": {
                "type": "float",
                "low": 0.01,
                "high": 1,
                "when": {"constraint.name": "weight_clipping"},
            }
        },
        "tune.params.constraint.clip.when",
        "must be a searched parameter",
    ),
]


@pytest.mark.parametrize(("params", "field", "words"), BAD_SPACES)
def test_invalid_spaces_are_refused_before_anything_runs(
    params, field, words, tmp_path, monkeypatch
):
    path = space_file(tmp_path, params)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    monkeypatch.chdir(run_dir)
    result = CliRunner().invoke(main, ["tune", str(path), "--n-trials", "1"])
    assert result.exit_code == 2, result.output
    assert f"error: {field}" in result.output and words in result.output
    assert list(run_dir.iterdir()) == []


def test_objective_must_be_an_experiment_metric(tmp_path, registry):
    path = space_file(
        tmp_path,
        {"train.n_critic": {"type": "int", "low": 1, "high": 3}},
        objective={"metric": "fid"},
    )
    with pytest.raises(ConfigError, match=r"tune\.objective\.metric: 'fid' is not one of"):
        Tuner(path, [], TuneOptions(), registry=registry, tracking=None)


def test_a_weighted_sum_of_metrics_is_the_objective_each_trial_reports(tmp_path, monkeypatch):
    """objective: {metric: {reverse_kl: 1, hq_fraction: -1}}: each trial's value is that
    sum of its run's final metrics, and the study names the objective by it."""
    monkeypatch.chdir(tmp_path)
    lines: list[str] = []
    tuner = make_tuner(
        tmp_path,
        3,
        lines=lines,
        extra=[
            "tune.objective.metric={reverse_kl: 1.0, hq_fraction: -1.0}",
            "tune.objective.direction=minimize",
        ],
    )
    assert tuner.space.metric == "reverse_kl - hq_fraction"
    tuner.run()
    study = load(tmp_path)
    _, _, children = runs_of(tmp_path)
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    assert len(study.trials) == 3
    for trial in study.trials:
        m = by_number[trial.number].data.metrics
        assert trial.value == pytest.approx(m["reverse_kl"] - m["hq_fraction"], abs=1e-12)
    assert study.user_attrs["objective_metric"] == "reverse_kl - hq_fraction"
    assert any("reverse_kl - hq_fraction" in line for line in lines), lines


@pytest.mark.parametrize(
    ("objective", "words"),
    [
        ({"metric": {"reverse_kl": 1.0, "fid": -1.0}, "direction": "minimize"}, "'fid' is not"),
        ({"metric": {"reverse_kl": 1.0}}, "needs a direction"),
        ({"metric": {}, "direction": "minimize"}, "non-empty"),
    ],
)
def test_a_bad_weighted_objective_is_refused_with_its_field(tmp_path, registry, objective, words):
    path = space_file(
        tmp_path, {"train.n_critic": {"type": "int", "low": 1, "high": 3}}, objective=objective
    )
    with pytest.raises(ConfigError, match=r"tune\.objective") as info:
        Tuner(path, [], TuneOptions(), registry=registry, tracking=None)
    assert words in str(info.value)


def test_conditional_space_switches_plugins_cleanly(registry):
    from pipeline.experiment.config import load_yaml
    from pipeline.tuning.search_space import build_search_space

    base = load_yaml(EXPERIMENTS / "compare_constraints_grid25.yaml")
    space = build_search_space(base, registry)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        values = space.suggest(trial)
        name = values["constraint.name"]
        seen.add(name)
        assert ("constraint.weight" in values) == (name == "gradient_penalty")
        assert ("constraint.clip" in values) == (name == "weight_clipping")
        data = space.apply(values)
        assert set(data["constraint"]) <= {"name", "weight", "clip"}
        study.tell(trial, 0.0)
    assert seen == {"gradient_penalty", "weight_clipping", "spectral_norm"}


def test_grid_sampler_needs_grid_values_for_floats(tmp_path, registry):
    path = space_file(tmp_path, {"constraint.weight": {"type": "float", "low": 0.1, "high": 1}})
    with pytest.raises(ConfigError, match="grid sampler needs 'grid' values"):
        Tuner(path, [], TuneOptions(sampler="grid"), registry=registry, tracking=None)


@pytest.mark.slow
def test_a_study_refuses_to_go_on_with_another_config(tmp_path, monkeypatch, registry):
    monkeypatch.chdir(tmp_path)
    make_tuner(tmp_path, 1).run()
    tracking = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_location=str(tmp_path / "artifacts"),
    )
    other = Tuner(
        EXPERIMENTS / "wgan_gp_grid25.yaml",
        [*TINY_SMALL, "train.steps=6"],
        TuneOptions(n_trials=1),
        registry=registry,
        tracking=tracking,
    )
    with pytest.raises(ConfigError, match=r"train\.steps"):
        other.run()
    assert len(load(tmp_path).trials) == 1


#: the Optuna class each ``--sampler`` / ``--pruner`` name stands for
SAMPLER_CLASSES = {
    "tpe": optuna.samplers.TPESampler,
    "random": optuna.samplers.RandomSampler,
    "grid": optuna.samplers.GridSampler,
    "cmaes": optuna.samplers.CmaEsSampler,
}
PRUNER_CLASSES = {
    "median": optuna.pruners.MedianPruner,
    "hyperband": optuna.pruners.HyperbandPruner,
    "none": optuna.pruners.NopPruner,
}


def test_every_sampler_and_pruner_the_cli_offers_is_built(tmp_path, registry):
    params = main.commands["tune"].params
    choices = {p.name: p.type.choices for p in params if p.name in ("sampler", "pruner")}
    assert sorted(choices["sampler"]) == sorted(SAMPLER_CLASSES)
    assert sorted(choices["pruner"]) == sorted(PRUNER_CLASSES)
    path = space_file(tmp_path, {"train.n_critic": {"type": "int", "low": 1, "high": 3}})
    for sampler, pruner in zip(choices["sampler"], [*choices["pruner"], "median"], strict=True):
        options = TuneOptions(sampler=sampler, pruner=pruner, seed=0)
        tuner = Tuner(path, [], options, registry=registry, tracking=None)
        assert type(tuner.sampler) is SAMPLER_CLASSES[sampler]
        assert type(tuner.pruner) is PRUNER_CLASSES[pruner]


def test_cmaes_refuses_a_categorical_space(tmp_path, registry):
    path = space_file(tmp_path, {"loss.name": {"type": "categorical", "choices": ["wgan"]}})
    with pytest.raises(ConfigError, match="--sampler: cmaes needs a numeric space"):
        Tuner(path, [], TuneOptions(sampler="cmaes"), registry=registry, tracking=None)


class Heard(logging.Handler):
    """What a logger said (Optuna's log does not reach the root logger, nor pytest's)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def test_study_plots_keep_optunas_empty_warnings_out_of_the_terminal(tmp_path, registry):
    # every trial with one n_critic: Optuna's contour plot warns "Param train.n_critic
    # unique value length is less than 2." on its own log, which says nothing to the user
    from pipeline.experiment.config import load_yaml
    from pipeline.tracking.client import RunTracker
    from pipeline.tuning.report import log_study_artifacts
    from pipeline.tuning.search_space import build_search_space

    space = build_search_space(load_yaml(EXPERIMENTS / "wgan_gp_grid25.yaml"), registry)
    dists = {
        "train.n_critic": optuna.distributions.IntDistribution(1, 10),
        "constraint.weight": optuna.distributions.FloatDistribution(0.01, 100.0, log=True),
    }
    study = optuna.create_study()
    for value, weight in ((0.5, 0.1), (0.3, 1.0), (0.4, 10.0)):
        params = {"train.n_critic": 5, "constraint.weight": weight}
        study.add_trial(optuna.trial.create_trial(params=params, distributions=dists, value=value))
    tracking = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "a")
    )
    parent = RunTracker.start(tracking, "plots", run_name="study plots")
    before = optuna.logging.get_verbosity()
    style = {k: str(matplotlib.rcParams[k]) for k in ("axes.prop_cycle", "axes.facecolor")}
    heard = Heard()
    logging.getLogger("optuna").addHandler(heard)
    try:
        log_study_artifacts(study, parent, space)
        optuna.logging.get_logger("optuna.visualization").warning("heard after the plots")
    finally:
        logging.getLogger("optuna").removeHandler(heard)
    assert not [line for line in heard.lines if "unique value length" in line], heard.lines
    assert "heard after the plots" in heard.lines  # the log itself is back as it was
    assert optuna.logging.get_verbosity() == before  # quiet only for the plots
    # Optuna's ggplot style stays in its plots: later figures keep matplotlib's colours
    assert {k: str(matplotlib.rcParams[k]) for k in style} == style
    arts = {
        a.path for a in MlflowClient(tracking.tracking_uri).list_artifacts(parent.run_id, "plots")
    }
    assert "plots/contour.png" in arts


def test_tune_progress_bar_counts_trials_with_the_best_and_the_running_step(tmp_path, monkeypatch):
    import io

    from pipeline.cli.progress import TuneBar

    monkeypatch.chdir(tmp_path)
    drawn = io.StringIO()
    bar = TuneBar(file=drawn)
    tuner = make_tuner(tmp_path, 2)
    tuner.progress = bar
    steps: list[str] = []
    real_step = bar.step
    bar.step = lambda trial, step: (real_step(trial, step), steps.append(bar.postfix()))
    study = tuner.run()
    out = drawn.getvalue()
    assert "2/2" in out  # n of N trials
    assert f"best w1 {study.best_value:.4g}" in out  # the best so far, as it ended
    assert steps and steps[0].startswith("trial 0 step 2")  # the running trial's step
    assert bar.bar is None  # closed with the search


def test_tune_without_a_terminal_prints_plain_lines_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["tune", str(EXPERIMENTS / "wgan_gp_grid25.yaml"), "--n-trials", "1"]
    args += [a for o in TINY_SMALL for a in ("-o", o)]
    args += ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "trial    0  COMPLETE" in result.output
    assert "\r" not in result.output and "trial/s" not in result.output  # no bar
