"""Seeds per trial (``tune.seeds``): k seeds in lockstep, the mean reported, one stop for all.
Real Optuna journal, real MLflow SQLite store, real trainings on tiny budgets."""

from __future__ import annotations

import math
import threading
import time

import optuna
import pytest

from pipeline.errors import ConfigError
from pipeline.experiment.config import load_experiment
from pipeline.training.run import run_training
from pipeline.training.trainer import Trainer
from pipeline.tuning.population.tune import PopulationTuner
from pipeline.tuning.trial_seeds import SeedGroup, per_seed, run_seed_group, summarise
from tests.conftest import EXPERIMENTS, TINY_SMALL
from tests.test_tune import load, make_tuner, runs_of


def test_summarise_gives_the_mean_each_seed_and_the_standard_error_by_hand():
    combined = summarise([3, 4, 5], [{"modes": 1.0}, {"modes": 2.0}, {"modes": 6.0}])
    # mean 3; sample variance ((1-3)² + (2-3)² + (6-3)²) / 2 = 7; s.e. √(7/3)
    assert combined["modes"] == 3.0
    assert combined["modes/se"] == pytest.approx(math.sqrt(7 / 3), rel=1e-12)
    assert [combined[f"modes/seed_{s}"] for s in (3, 4, 5)] == [1.0, 2.0, 6.0]
    assert per_seed([3, 4, 5], combined) == {
        "3": {"modes": 1.0},
        "4": {"modes": 2.0},
        "5": {"modes": 6.0},
    }
    assert summarise([7], [{"w1": 0.5}])["w1/se"] == 0.0


@pytest.mark.slow
def test_a_trial_trains_each_seed_and_reports_their_mean(tmp_path, monkeypatch, registry):
    """tune.seeds=3: each trial's run holds, at every evaluation, the mean of its three
    seeds' metrics under the metric's name, each seed's value and the s.e.; the value
    Optuna sees at each step is the objective of the mean; the seeds' values are those of
    the same setting trained alone on seeds 0, 1 and 2."""
    monkeypatch.chdir(tmp_path)
    tuner = make_tuner(tmp_path, 2, extra=["tune.seeds=3"])
    tuner.run()
    study = load(tmp_path)
    client, _, children = runs_of(tmp_path)
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    assert len(study.trials) == 2 and len(children) == 2
    for trial in study.trials:
        assert trial.state == optuna.trial.TrialState.COMPLETE
        run = by_number[trial.number]
        assert run.data.tags["trial.seeds"] == "0,1,2"
        assert trial.user_attrs["seeds"] == [0, 1, 2]
        for step in (2, 4):
            history = {
                name: {m.step: m.value for m in client.get_metric_history(run.info.run_id, name)}
                for name in ("w1", "w1/seed_0", "w1/seed_1", "w1/seed_2", "w1/se")
            }
            seeds = [history[f"w1/seed_{s}"][step] for s in range(3)]
            assert history["w1"][step] == pytest.approx(sum(seeds) / 3, rel=1e-12)
            assert trial.intermediate_values[step] == pytest.approx(history["w1"][step], rel=1e-12)
            assert history["w1/se"][step] > 0  # three seeds do not land on one value
        assert trial.value == pytest.approx(run.data.metrics["w1"], rel=1e-12)
        objectives = trial.user_attrs["seed_objectives"]
        assert sorted(objectives) == ["0", "1", "2"]
        assert trial.value == pytest.approx(sum(objectives.values()) / 3, rel=1e-12)

    # the seeds are the setting's own trainings on seeds 0..2 (alone, untracked)
    trial = study.trials[0]
    for seed in range(3):
        overrides = [*TINY_SMALL, f"train.seed={seed}"] + [
            f"{k}={v}" for k, v in trial.params.items()
        ]
        exp = load_experiment(EXPERIMENTS / "wgan_gp_grid25.yaml", overrides, registry=registry)
        alone = run_training(exp, tracking=None, progress=False)
        # threads beside each other may round the last bits differently: a tolerance
        assert trial.user_attrs["seed_metrics"][str(seed)]["w1"] == pytest.approx(
            alone.metrics["w1"], rel=1e-4
        )


@pytest.mark.slow
def test_a_pruned_trial_stops_every_seed_and_is_pruned_on_the_mean(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    tuner = make_tuner(tmp_path, 2, pruned=1, extra=["tune.seeds=2"])
    tuner.run()
    study = load(tmp_path)
    states = [t.state for t in study.trials]
    assert states == [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED]
    pruned = study.trials[1]
    assert pruned.user_attrs["pruned_at_step"] == 2
    assert set(pruned.user_attrs["seed_metrics"]) == {"0", "1"}
    _, _, children = runs_of(tmp_path)
    assert {r.info.status for r in children} == {"FINISHED", "KILLED"}
    # no seed thread outlives its trial
    assert not [t for t in threading.enumerate() if t.name.startswith("seed-")]


def test_one_seed_per_trial_records_as_before(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_tuner(tmp_path, 1).run()
    study = load(tmp_path)
    _, _, children = runs_of(tmp_path)
    assert "seeds" not in study.trials[0].user_attrs
    assert not [k for k in children[0].data.metrics if "/seed_" in k or k.endswith("/se")]
    assert "trial.seeds" not in children[0].data.tags


def test_a_stop_from_the_first_seed_ends_the_others_at_once(registry, tmp_path):
    """The first seed's callback raises (as a pruner or Ctrl-C would): the other seeds,
    which would train 100,000 steps, stop within seconds and the error is the first's."""
    long = [*TINY_SMALL, "train.steps=100000", "train.eval_every=2"]
    exps = [
        load_experiment(
            EXPERIMENTS / "wgan_gp_grid25.yaml", [*long, f"train.seed={s}"], registry=registry
        )
        for s in range(3)
    ]
    group = SeedGroup([0, 1, 2])

    def refuse(step, metrics):
        raise optuna.TrialPruned(f"stop at {step}")

    def first():
        trainer = Trainer(
            exps[0],
            workdir=tmp_path,
            progress=False,
            write_artifacts=False,
            combine_eval=group.combine(0),
            on_eval=group.decided(refuse),
        )
        return trainer.run()

    start = time.perf_counter()
    with pytest.raises(optuna.TrialPruned, match="stop at 2"):
        run_seed_group(group, exps[1:], first)
    assert time.perf_counter() - start < 60
    assert group.error is None
    assert not [t for t in threading.enumerate() if t.name.startswith("seed-")]


def test_a_failing_seed_fails_the_trial_naming_the_seed(registry, tmp_path):
    """The second seed trains with an absurd learning rate and goes non-finite before its
    first evaluation: the group stops, and the first seed's training raises that error
    with the seed in front."""
    from pipeline.errors import NonFiniteLossError

    exps = [
        load_experiment(
            EXPERIMENTS / "wgan_gp_grid25.yaml",
            [*TINY_SMALL, f"train.seed={s}", *extra],
            registry=registry,
        )
        for s, extra in ((0, []), (1, ["optimizer.critic.lr=1e30", "optimizer.generator.lr=1e30"]))
    ]
    group = SeedGroup([0, 1])

    def first():
        return Trainer(
            exps[0],
            workdir=tmp_path,
            progress=False,
            write_artifacts=False,
            combine_eval=group.combine(0),
            on_eval=group.decided(None),
        ).run()

    with pytest.raises(NonFiniteLossError, match=r"^seed 1: "):
        run_seed_group(group, exps[1:], first)
    assert not [t for t in threading.enumerate() if t.name.startswith("seed-")]


def test_population_mode_refuses_seeds_per_trial_by_name(tmp_path):
    tuner = make_tuner(tmp_path, 1, file="wgan_gp_grid25.yaml", extra=["tune.seeds=2"])
    with pytest.raises(ConfigError) as info:
        PopulationTuner(tuner, 4)
    assert info.value.field == "tune.seeds"


def test_seeds_per_trial_must_be_positive(tmp_path):
    with pytest.raises(ConfigError, match=r"tune\.seeds"):
        make_tuner(tmp_path, 1, extra=["tune.seeds=0"])


def _space(registry, objective: str, seeds: int = 3):
    import yaml

    from pipeline.tuning.search_space import build_search_space

    base = yaml.safe_load((EXPERIMENTS / "gan_ring8.yaml").read_text())
    base["name"] = "gan_ring8"  # a file's name comes from its path
    base["tune"] = {"objective": yaml.safe_load(objective), "seeds": seeds}
    return build_search_space(base, registry, require_params=False)


def test_the_worst_seed_ranks_a_trial_that_the_mean_ranks_first_below_by_hand(registry):
    """Trial A: two seeds at reverse KL 0.01 / 98 % and one that underfed a mode (0.30);
    trial B: three even seeds (0.06 / 93 %). Per seed, ``reverse_kl - hq_fraction`` is
    A: -0.97, -0.97, -0.68 (mean -0.8733) and B: -0.87 each. The mean picks A, the worst
    seed B."""
    a = summarise([1, 2, 3], [{"reverse_kl": r, "hq_fraction": 0.98} for r in (0.01, 0.01, 0.3)])
    b = summarise([1, 2, 3], [{"reverse_kl": 0.06, "hq_fraction": 0.93}] * 3)
    weighted = "{metric: {reverse_kl: 1.0, hq_fraction: -1.0}, direction: minimize"
    mean = _space(registry, weighted + "}")
    worst = _space(registry, weighted + ", over_seeds: worst}")
    assert mean.value(a) == pytest.approx(-0.87333, abs=1e-5)
    assert mean.value(b) == pytest.approx(-0.87)
    assert mean.value(a) < mean.value(b)  # minimize: the mean picks A
    assert worst.value(a) == pytest.approx(-0.68) and worst.value(b) == pytest.approx(-0.87)
    assert worst.value(b) < worst.value(a)  # the worst seed picks B
    assert worst.metric == "reverse_kl - hq_fraction (worst seed)"
    # a metric maximized: the worst seed is the smallest value
    modes = _space(registry, "{metric: modes, over_seeds: worst}")
    assert modes.direction == "maximize"
    assert modes.value(summarise([1, 2], [{"modes": 8.0}, {"modes": 6.0}])) == 6.0
    # one seed's NaN makes the trial's value NaN (Optuna does not rank it)
    nan = summarise([1, 2], [{"modes": 8.0}, {"modes": math.nan}])
    assert math.isnan(modes.value(nan))


def test_the_worst_seed_needs_several_seeds(registry):
    with pytest.raises(ConfigError, match=r"over_seeds 'worst' needs tune\.seeds of 2 or more"):
        _space(registry, "{metric: w1, over_seeds: worst}", seeds=1)
