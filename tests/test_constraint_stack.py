"""Several constraints on one critic (``constraints:``): the stack, its config, its runs.

Real torch on tiny critics and budgets, the real registry, real MLflow and Optuna stores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import ClassVar

import pytest
import torch
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from torch import nn

from pipeline.cli.commands import main
from pipeline.errors import ConfigError
from pipeline.experiment.config import load_experiment, load_yaml, validate
from pipeline.testing import registered
from pipeline.training.constraints import ConstraintStack, build_constraint, has_penalty
from pipeline.training.resume import check_resumable
from pipeline.training.run import run_tags
from pipeline.training.trainer import Trainer
from pipeline.tuning.search_space import build_search_space
from pipeline.types import Constraint
from pipeline_plugins.constraints.gradient_penalty import GradientPenalty
from pipeline_plugins.constraints.spectral_norm import SpectralNorm
from pipeline_plugins.constraints.weight_clipping import WeightClipping
from tests.conftest import EXPERIMENTS, TINY_SMALL, train_args
from tests.test_constraints import linear_critic, mlp_critic
from tests.test_startup import run_cli

FILE = EXPERIMENTS / "sngan_gp_grid25.yaml"


class SecondPenalty(GradientPenalty):
    """The gradient penalty under another name: a second penalizing member."""

    name = "gradient_penalty_2"
    description = "the gradient penalty again, for the tests"


class Recorder(Constraint):
    """Appends ``(name, hook)`` to a shared list on each hook it acts in."""

    name = "recorder"
    calls: ClassVar[list[tuple[str, str]]] = []

    def wrap_critic(self, critic: nn.Module) -> nn.Module:
        self.calls.append((self.name, "wrap"))
        return critic

    def after_critic_step(self, critic: nn.Module) -> None:
        self.calls.append((self.name, "after"))


class OtherRecorder(Recorder):
    name = "other_recorder"
    allows_single_pass = False


def gp(weight: float, cls: type[GradientPenalty] = GradientPenalty) -> GradientPenalty:
    return cls(cls.Settings(weight=weight))


# -- the stack ------------------------------------------------------------------------


@pytest.mark.parametrize(("w", "weights"), [([3.0, 4.0], (10.0, 0.5)), ([0.3, -0.4], (0.1, 2.0))])
def test_the_stack_penalty_is_the_sum_of_its_members(w: list[float], weights) -> None:
    """The gradient penalty of a linear critic is λ(‖w‖ − 1)² whatever the interpolates."""
    torch.manual_seed(0)
    critic = linear_critic(w, b=0.7)
    real, fake = torch.randn(32, 2), torch.randn(32, 2) * 3 + 1
    first, second = gp(weights[0]), gp(weights[1], SecondPenalty)
    stack = ConstraintStack([first, second])
    total = stack.penalty(critic, real, fake)
    assert total is not None and total.requires_grad
    expected = (math.hypot(*w) - 1.0) ** 2
    assert total.item() == pytest.approx(sum(weights) * expected, rel=1e-5)
    alone = [first.penalty(critic, real, fake), second.penalty(critic, real, fake)]
    assert total.item() == pytest.approx(sum(p.item() for p in alone if p is not None), rel=1e-6)
    diagnostics = stack.diagnostics(critic)
    assert set(diagnostics) == {"penalty/gradient_penalty", "penalty/gradient_penalty_2"}
    for (name, value), weight in zip(diagnostics.items(), weights, strict=True):
        assert not value.requires_grad, name
        assert value.item() == pytest.approx(weight * expected, rel=1e-5), name


def test_a_member_without_penalty_this_step_counts_zero() -> None:
    critic = linear_critic([3.0, 4.0], b=0.0)
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    stack = ConstraintStack([gp(0.0), gp(2.0, SecondPenalty)])
    total = stack.penalty(critic, real, fake)
    assert total is not None and total.item() == pytest.approx(2.0 * 16.0, rel=1e-5)
    assert stack.diagnostics(critic)["penalty/gradient_penalty"].item() == 0.0
    assert ConstraintStack([gp(0.0)]).penalty(critic, real, fake) is None


def test_the_penalty_sees_the_critic_the_members_wrapped() -> None:
    """Spectral norm first: the linear critic's weight becomes w/σ(w) = w/‖w‖ (one power
    iteration is exact for a 1×2 matrix), so the gradient penalty on it vanishes, while
    on the raw critic it is λ(‖w‖ − 1)² = 10·16."""
    torch.manual_seed(0)
    real, fake = torch.randn(32, 2), torch.randn(32, 2)
    raw = gp(10.0).penalty(linear_critic([3.0, 4.0], b=0.0), real, fake)
    assert raw is not None and raw.item() == pytest.approx(160.0, rel=1e-5)
    stack = ConstraintStack([SpectralNorm(), gp(10.0)])
    critic = stack.wrap_critic(linear_critic([3.0, 4.0], b=0.0))
    total = stack.penalty(critic, real, fake)
    assert total is not None and total.item() == pytest.approx(0.0, abs=1e-6)
    diagnostics = stack.diagnostics(critic)
    assert diagnostics["sigma/net"].item() == pytest.approx(5.0, rel=1e-5)
    assert set(diagnostics) == {"sigma/net", "penalty/gradient_penalty"}


def test_members_act_in_order_and_single_pass_needs_all() -> None:
    Recorder.calls = []
    stack = ConstraintStack([OtherRecorder(), Recorder()])
    critic = stack.wrap_critic(mlp_critic())
    stack.after_critic_step(critic)
    assert Recorder.calls == [
        ("other_recorder", "wrap"),
        ("recorder", "wrap"),
        ("other_recorder", "after"),
        ("recorder", "after"),
    ]
    assert stack.allows_single_pass is False
    assert ConstraintStack([Recorder(), SpectralNorm()]).allows_single_pass is True
    assert (
        not has_penalty(stack)
        and stack.penalty(critic, torch.zeros(2, 2), torch.zeros(2, 2)) is None
    )
    assert has_penalty(ConstraintStack([SpectralNorm(), gp(1.0)]))


def test_weight_clipping_then_spectral_norm_clamps_the_raw_weights() -> None:
    torch.manual_seed(0)
    critic = mlp_critic()
    stack = ConstraintStack([WeightClipping(WeightClipping.Settings(clip=0.05)), SpectralNorm()])
    stack.wrap_critic(critic)
    with torch.no_grad():
        for p in critic.parameters():
            p.add_(1.0)
    stack.after_critic_step(critic)
    assert all(p.abs().max() <= 0.05 for p in critic.parameters())
    assert "sigma/net.0" in stack.diagnostics(critic)


def test_the_stack_refuses_no_members_and_repeated_names() -> None:
    with pytest.raises(ValueError, match="at least one"):
        ConstraintStack([])
    with pytest.raises(ValueError, match="distinct"):
        ConstraintStack([gp(1.0), gp(2.0)])


# -- config ------------------------------------------------------------------------------


def test_the_file_resolves_to_both_plugins_in_order(registry) -> None:
    exp = load_experiment(FILE, registry=registry)
    assert "constraint" not in exp.resolved
    assert list(exp.resolved["constraints"].items()) == [
        ("spectral_norm", {"n_power_iterations": 1}),
        ("gradient_penalty", {"weight": 1.0}),
    ]
    params = exp.flat_params()
    assert params["constraints.gradient_penalty.weight"] == "1.0"
    assert params["constraints.spectral_norm.n_power_iterations"] == "1"
    assert not any(k.startswith("constraint.") for k in params)
    tags = run_tags(exp, torch.device("cpu"))
    assert tags["plugin.constraints.spectral_norm"] == "spectral_norm"
    assert tags["plugin.constraints.gradient_penalty"] == "gradient_penalty"
    assert tags["plugin.constraints.gradient_penalty.package"].startswith("gan-pipeline")
    assert "plugin.constraint" not in tags
    built = build_constraint(exp.plugins)
    assert isinstance(built, ConstraintStack)
    assert [type(m) for m in built.members] == [SpectralNorm, GradientPenalty]
    # the resolved config is itself a valid experiment that resolves the same
    assert validate(exp.resolved, registry).resolved == exp.resolved


def test_overrides_set_a_members_setting_and_append_a_member(registry) -> None:
    exp = load_experiment(
        FILE,
        ["constraints.gradient_penalty.weight=0.25", "constraints.weight_clipping.clip=0.5"],
        registry=registry,
    )
    assert exp.resolved["constraints"] == {
        "spectral_norm": {"n_power_iterations": 1},
        "gradient_penalty": {"weight": 0.25},
        "weight_clipping": {"clip": 0.5},
    }
    assert list(exp.resolved["constraints"]) == [
        "spectral_norm",
        "gradient_penalty",
        "weight_clipping",
    ]
    built = build_constraint(exp.plugins)
    assert isinstance(built, ConstraintStack)
    assert [m.settings.model_dump() for m in built.members][1:] == [
        {"weight": 0.25},
        {"clip": 0.5},
    ]
    # null drops the whole section, so one plugin can take its place
    single = load_experiment(
        FILE, ["constraints=null", "constraint.name=spectral_norm"], registry=registry
    )
    assert "constraints" not in single.resolved
    assert single.resolved["constraint"] == {"name": "spectral_norm", "n_power_iterations": 1}


BAD = [
    (["constraint.name=none"], "constraints", "not both"),
    (
        ["constraints.gradient_penalty.weigth=1"],
        "constraints.gradient_penalty.weigth",
        "unknown key (allowed here: weight)",
    ),
    (
        ["constraints.gradient_penalti.weight=1"],
        "constraints.gradient_penalti",
        "unknown constraint 'gradient_penalti'; available:",
    ),
    (
        ["constraints.adam.lr=0.1"],
        "constraints.adam",
        "'adam' is a plugin of kind optimizer, not a constraint",
    ),
    (
        ["constraints.gradient_penalty.weight=-1"],
        "constraints.gradient_penalty.weight",
        "greater than or equal to 0",
    ),
    (
        ["constraints.gradient_penalty=10"],
        "constraints.gradient_penalty",
        "must be a mapping of gradient_penalty's settings",
    ),
    (["constraints.spectral_norm=null"], "constraints.spectral_norm", "({} for its defaults)"),
    (["constraints={}"], "constraints", "non-empty mapping"),
    (["constraints=[spectral_norm, gradient_penalty]"], "constraints", "non-empty mapping"),
    (
        ["constraints={name: gradient_penalty, weight: 1}"],
        "constraints.name",
        "keyed by plugin name",
    ),
]


@pytest.mark.parametrize(("overrides", "field", "words"), BAD)
def test_bad_constraints_name_the_field(overrides, field, words, registry) -> None:
    with pytest.raises(ConfigError) as caught:
        load_experiment(FILE, overrides, registry=registry)
    assert caught.value.field == field
    assert words in caught.value.message


def test_bad_constraints_are_refused_in_one_line_without_torch_or_files(tmp_path) -> None:
    file = str(FILE)
    cases = {
        "constraints.gradient_penalty.weigth": [
            "train",
            file,
            "-o",
            "constraints.gradient_penalty.weigth=1",
        ],
        "constraints:": ["train", file, "-o", "constraint.name=none"],
        "constraints.gradient_penalti": [
            "tune",
            file,
            "-o",
            "constraints.gradient_penalti.weight=1",
        ],
    }
    for (field, args), result in zip(
        cases.items(), run_cli(tmp_path, *cases.values()), strict=True
    ):
        assert result["exit_code"] == 2, (args, result)
        lines = result["output"].strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {field}"), result
        assert result["imported"] == [], (args, result["imported"])
    assert list(tmp_path.iterdir()) == []


def test_a_resumed_run_refuses_another_penalty_weight(registry) -> None:
    old = load_experiment(FILE, ["train.steps=4"], registry=registry)
    new = load_experiment(
        FILE, ["train.steps=8", "constraints.gradient_penalty.weight=2"], registry=registry
    )
    with pytest.raises(ConfigError, match=r"constraints\.gradient_penalty\.weight \(1\.0 → 2\.0\)"):
        check_resumable(new, {"config": old.resolved, "step": 4})
    check_resumable(
        load_experiment(FILE, ["train.steps=8"], registry=registry),
        {"config": old.resolved, "step": 4},
    )


#: the experiment files with one ``constraint:`` (all but the stacked ones)
SINGLE = sorted(
    p.name for p in EXPERIMENTS.glob("*.yaml") if "constraint" in yaml.safe_load(p.read_text())
)


@pytest.mark.parametrize("file", SINGLE)
def test_single_constraint_experiments_resolve_as_before(file, registry) -> None:
    """Each file's ``constraint:`` resolves to exactly its own keys plus the plugin's
    defaults, under ``constraint`` only, and trains with the plugin itself."""
    assert len(SINGLE) >= 8
    raw = load_yaml(EXPERIMENTS / file)
    exp = validate({k: v for k, v in raw.items() if k != "tune"}, registry)
    info = exp.plugins["constraint"].info
    expected = {"name": raw["constraint"]["name"], **info.cls.Settings().model_dump()}
    expected.update(raw["constraint"])
    assert exp.resolved["constraint"] == expected and "constraints" not in exp.resolved
    assert list(exp.resolved).index("constraint") == list(exp.resolved).index("loss") + 1
    assert {k for k in exp.flat_params() if k.startswith("constraint")} == {
        f"constraint.{k}" for k in expected
    }
    tags = run_tags(exp, torch.device("cpu"))
    assert tags["plugin.constraint"] == info.name and "plugin.constraint.package" in tags
    assert not any(t.startswith("plugin.constraints") for t in tags)
    assert type(build_constraint(exp.plugins)) is info.cls


# -- training -------------------------------------------------------------------------


def tiny_trainer(registry, workdir: Path, *overrides: str) -> Trainer:
    """40 steps of 32-wide nets, measured every 10, untracked and writing nothing."""
    exp = load_experiment(
        FILE,
        [
            "model.g_width=32",
            "model.d_width=32",
            "train.batch_size=64",
            "train.steps=40",
            "train.log_every=10",
            "train.eval_every=40",
            "train.eval_samples=200",
            "optimizer.critic.lr=1.0e-3",
            *overrides,
        ],
        registry=registry,
    )
    return Trainer(exp, device="cpu", workdir=workdir, progress=False, write_artifacts=False)


def spectral_norms(critic: nn.Module) -> dict[str, float]:
    """The true largest singular value of each wrapped layer's normalized weight."""
    critic.eval()  # reading module.weight runs no further power iteration
    norms = {
        path: torch.linalg.matrix_norm(module.weight.detach(), ord=2).item()
        for path, module in critic.named_modules()
        if hasattr(module, "parametrizations")
    }
    critic.train()
    return norms


@pytest.mark.usefixtures("one_thread")
def test_spectral_norm_and_gradient_penalty_train_together(registry, tmp_path) -> None:
    trainer = tiny_trainer(registry, tmp_path)
    assert isinstance(trainer.constraint, ConstraintStack) and trainer.single_pass
    trainer.run()
    norms = spectral_norms(trainer.critic)
    assert len(norms) == 4
    for path, sigma in norms.items():
        assert sigma == pytest.approx(1.0, abs=0.05), path  # measured: within 0.015
    history = trainer.history
    assert {"penalty", "penalty/gradient_penalty", "sigma/net.0"} <= set(history)
    steps, values = history["penalty/gradient_penalty"]
    assert steps == [10, 20, 30, 40]
    total_steps, totals = history["penalty"]
    by_step = dict(zip(total_steps, totals, strict=True))
    # one penalizing member: the total is that member's penalty, the same tensor
    assert values == [by_step[s] for s in steps]
    assert all(v > 0 for v in values)


@pytest.mark.usefixtures("one_thread")
def test_a_zero_penalty_on_spectral_norm_trains_exactly_as_spectral_norm_alone(
    registry, tmp_path
) -> None:
    """λ = 0 skips the penalty (no interpolates drawn), so the stack is the same computation
    in the same order as the one plugin: equal bit for bit on CPU in one process."""
    # each built and run in turn: building seeds the global RNG the training draws from
    stacked = tiny_trainer(
        registry, tmp_path, "train.steps=10", "constraints.gradient_penalty.weight=0"
    )
    assert isinstance(stacked.constraint, ConstraintStack)
    stacked.run()
    single = tiny_trainer(
        registry, tmp_path, "train.steps=10", "constraints=null", "constraint.name=spectral_norm"
    )
    assert isinstance(single.constraint, SpectralNorm)
    single.run()
    for key in ("loss/critic", "loss/generator", "sigma/net.0"):
        assert stacked.history[key] == single.history[key], key
    assert stacked.history["penalty/gradient_penalty"][1] == [0.0]
    assert "penalty" not in single.history
    for a, b in ((stacked.critic, single.critic), (stacked.generator, single.generator)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.usefixtures("one_thread")
def test_two_penalties_are_logged_apart_and_summed(registry, tmp_path) -> None:
    with registered(SecondPenalty, registry=registry):
        trainer = tiny_trainer(
            registry,
            tmp_path,
            "train.steps=20",
            "constraints.gradient_penalty_2.weight=3.0",
        )
        trainer.run()
    history = trainer.history
    first = dict(zip(*history["penalty/gradient_penalty"], strict=True))
    second = dict(zip(*history["penalty/gradient_penalty_2"], strict=True))
    total = dict(zip(*history["penalty"], strict=True))
    assert sorted(first) == sorted(second) == [10, 20]
    for step in first:
        # each draws its own interpolates, so only the sum is exact (up to float32 rounding)
        assert first[step] > 0 and second[step] > 0
        assert total[step] == pytest.approx(first[step] + second[step], rel=1e-6)


@pytest.mark.slow
def test_a_tracked_run_logs_params_tags_and_penalties_per_constraint(shared_store) -> None:
    result = CliRunner().invoke(
        main,
        train_args(
            FILE.name, shared_store, *TINY_SMALL[4:], "constraints.gradient_penalty.weight=4"
        ),
    )
    assert result.exit_code == 0, result.output
    client = MlflowClient(shared_store.tracking_uri)
    exp = client.get_experiment_by_name("sngan_gp_grid25")
    (run,) = client.search_runs([exp.experiment_id], max_results=1)
    params, tags, metrics = run.data.params, run.data.tags, run.data.metrics
    assert params["constraints.gradient_penalty.weight"] == "4.0"
    assert params["constraints.spectral_norm.n_power_iterations"] == "1"
    assert tags["plugin.constraints.gradient_penalty"] == "gradient_penalty"
    assert tags["plugin.constraints.spectral_norm.package"].startswith("gan-pipeline")
    assert {"penalty", "penalty/gradient_penalty", "sigma/net.0"} <= set(metrics)
    per = {
        m.step: m.value
        for m in client.get_metric_history(run.info.run_id, "penalty/gradient_penalty")
    }
    total = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "penalty")}
    assert sorted(per) == [2, 4, 6] and all(per[s] == total[s] for s in per)
    config = yaml.safe_load(
        Path(client.download_artifacts(run.info.run_id, "config.yaml")).read_text()
    )
    assert config["constraints"] == {
        "spectral_norm": {"n_power_iterations": 1},
        "gradient_penalty": {"weight": 4.0},
    }


# -- tuning -------------------------------------------------------------------------------


def test_the_penalty_weight_is_a_validated_search_dimension(registry) -> None:
    base = load_yaml(FILE)
    space = build_search_space(base, registry)
    assert "constraints.gradient_penalty.weight" in space.params
    assert space.apply({"constraints.gradient_penalty.weight": 0.3})["constraints"] == {
        "spectral_norm": {"n_power_iterations": 1},
        "gradient_penalty": {"weight": 0.3},
    }
    base["tune"]["params"]["constraints.gradient_penalty.weight"]["low"] = -1.0
    base["tune"]["params"]["constraints.gradient_penalty.weight"]["log"] = False
    with pytest.raises(
        ConfigError,
        match=r"^tune\.params\.constraints\.gradient_penalty\.weight: invalid with value -1\.0",
    ):
        build_search_space(base, registry)


@pytest.mark.slow
def test_a_two_trial_tune_over_the_penalty_weight_lands_in_mlflow(tmp_path, monkeypatch) -> None:
    import optuna

    from pipeline.host.registry import default_registry
    from pipeline.tracking.client import TrackingSettings
    from pipeline.tuning.tuner import TuneOptions, Tuner

    monkeypatch.chdir(tmp_path)
    tracking = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_location=str(tmp_path / "artifacts"),
    )
    Tuner(
        FILE,
        TINY_SMALL,
        TuneOptions(n_trials=2, seed=0),
        registry=default_registry(),
        tracking=tracking,
        echo=lambda _: None,
    ).run()
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    )
    trials = optuna.load_study(study_name="sngan_gp_grid25", storage=storage).trials
    assert [t.state.name for t in trials] == ["COMPLETE", "COMPLETE"]
    weights = [t.params["constraints.gradient_penalty.weight"] for t in trials]
    assert all(0.01 <= w <= 100 for w in weights) and weights[0] != weights[1]
    client = MlflowClient(tracking.tracking_uri)
    exp = client.get_experiment_by_name("sngan_gp_grid25")
    children = [
        r for r in client.search_runs([exp.experiment_id]) if "mlflow.parentRunId" in r.data.tags
    ]
    by_number = {int(r.data.tags["optuna.trial_number"]): r for r in children}
    assert sorted(by_number) == [0, 1]
    for number, run in by_number.items():
        logged = float(run.data.params["constraints.gradient_penalty.weight"])
        assert logged == pytest.approx(weights[number], rel=1e-12)
        assert run.data.tags["plugin.constraints.gradient_penalty"] == "gradient_penalty"
        assert "penalty/gradient_penalty" in run.data.metrics


def test_the_stack_hands_the_training_generator_to_every_member():
    import torch

    from pipeline.training.constraints import ConstraintStack
    from pipeline_plugins.constraints.gradient_penalty import GradientPenalty
    from pipeline_plugins.constraints.spectral_norm import SpectralNorm

    gp = GradientPenalty()
    stack = ConstraintStack([SpectralNorm(), gp])
    generator = torch.Generator().manual_seed(3)
    stack.rng = generator
    assert gp.rng is generator and stack.rng is generator
    critic = torch.nn.Linear(2, 1)
    real, fake = torch.randn(8, 2), torch.randn(8, 2)
    # the penalty's α comes from that generator: the same state gives the same penalty
    state = generator.get_state()
    first = stack.penalty(critic, real, fake)
    generator.set_state(state)
    assert torch.equal(stack.penalty(critic, real, fake), first)
