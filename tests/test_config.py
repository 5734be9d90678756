"""Experiment files: overrides, complete validation, errors that name the field."""

from __future__ import annotations

import pytest
import yaml

from pipeline.errors import ConfigError
from pipeline.experiment.config import (
    apply_overrides,
    load_experiment,
    load_yaml,
    parse_override,
    validate,
)
from tests.conftest import EXPERIMENTS, IMAGE_METRICS

#: experiment files (comparison files of `pipeline compare` hold ``variants:``: test_compare)
SEEDS = sorted(
    p.name for p in EXPERIMENTS.glob("*.yaml") if "variants" not in yaml.safe_load(p.read_text())
)


@pytest.mark.parametrize("name", SEEDS)
def test_every_experiment_file_validates(name, registry):
    exp = load_experiment(EXPERIMENTS / name, registry=registry)
    assert exp.name == name.removesuffix(".yaml")
    params = exp.flat_params()
    for key in (
        "dataset.name",
        "loss.name",
        "train.n_critic",
        "train.seed",
        "optimizer.critic.lr",
        "optimizer.generator.name",
        "model.name",
    ):
        assert key in params
    # one constraint plugin, or several (sngan_gp_grid25.yaml)
    assert ("constraint.name" in params) != any(k.startswith("constraints.") for k in params)


def test_seed_experiments_use_the_papers_defaults(registry):
    gp = load_experiment(EXPERIMENTS / "wgan_gp_grid25.yaml", registry=registry)
    assert gp.resolved["constraint"] == {"name": "gradient_penalty", "weight": 0.1}
    assert gp.resolved["optimizer"]["critic"]["betas"] == [0.5, 0.9]
    assert gp.train.n_critic == 5 and gp.train.batch_size == 256
    clip = load_experiment(EXPERIMENTS / "wgan_clip_ring8.yaml", registry=registry)
    assert clip.resolved["constraint"] == {"name": "weight_clipping", "clip": 0.01}
    assert clip.resolved["optimizer"]["critic"]["name"] == "rmsprop"
    assert clip.resolved["optimizer"]["critic"]["lr"] == pytest.approx(5e-5)
    sn = load_experiment(EXPERIMENTS / "sngan_ring8.yaml", registry=registry)
    assert sn.resolved["loss"]["name"] == "hinge"
    assert sn.resolved["constraint"]["n_power_iterations"] == 1
    gan = load_experiment(EXPERIMENTS / "gan_ring8.yaml", registry=registry)
    assert gan.resolved["loss"] == {"name": "bce", "generator": "non_saturating"}


def test_overrides_are_read_as_yaml(registry):
    assert parse_override("train.steps=2000") == ("train.steps", 2000)
    assert parse_override("constraint.weight=1e-2") == ("constraint.weight", "1e-2")
    assert parse_override("optimizer.critic.betas=[0.0, 0.9]") == (
        "optimizer.critic.betas",
        [0.0, 0.9],
    )
    exp = load_experiment(
        EXPERIMENTS / "wgan_gp_grid25.yaml",
        ["train.steps=7", "constraint.weight=1e-2", "train.n_critic=2"],
        registry=registry,
    )
    assert exp.train.steps == 7 and exp.train.n_critic == 2
    assert exp.resolved["constraint"]["weight"] == pytest.approx(0.01)


def test_overrides_do_not_touch_the_loaded_dict():
    raw = {"train": {"steps": 5}}
    out = apply_overrides(raw, ["train.steps=9"])
    assert raw["train"]["steps"] == 5 and out["train"]["steps"] == 9


BAD = [
    ("wgan_gp_grid25.yaml", "train.foo=1", "train.foo", "unknown key"),
    ("wgan_gp_grid25.yaml", "bogus=1", "bogus", "unknown key"),
    ("wgan_gp_grid25.yaml", "loss.name=nope", "loss.name", "available: bce, hinge"),
    ("wgan_gp_grid25.yaml", "constraint.name=nope", "constraint.name", "gradient_penalty"),
    ("wgan_gp_grid25.yaml", "train.steps=abc", "train.steps", "integer"),
    ("wgan_gp_grid25.yaml", "train.steps=0", "train.steps", "greater than or equal to 1"),
    ("wgan_gp_grid25.yaml", "train.n_critic=0", "train.n_critic", "greater than or equal to 1"),
    ("wgan_gp_grid25.yaml", "constraint.weight=-1", "constraint.weight", "greater than or equal"),
    ("wgan_gp_grid25.yaml", "constraint.clip=0.1", "constraint.clip", "unknown key"),
    ("wgan_clip_ring8.yaml", "constraint.clip=0", "constraint.clip", "greater than 0"),
    ("wgan_clip_ring8.yaml", "optimizer.critic.lr=0", "optimizer.critic.lr", "greater than 0"),
    ("wgan_gp_grid25.yaml", "optimizer.generator.lr=-1", "optimizer.generator.lr", "greater"),
    ("wgan_gp_grid25.yaml", "dataset.name=cifar10", "dataset.name", "ring8"),
    ("wgan_gp_grid25.yaml", "train.device=tpu", "train.device", "pattern"),
    ("gan_digits.yaml", "metrics=[modes]", "metrics", "does not apply"),
]


@pytest.mark.parametrize(("file", "override", "field", "words"), BAD)
def test_bad_input_names_the_field(file, override, field, words, registry):
    with pytest.raises(ConfigError) as info:
        load_experiment(EXPERIMENTS / file, [override], registry=registry)
    assert info.value.field == field
    assert words in str(info.value)


def test_missing_section_and_missing_file(registry, tmp_path):
    data = load_yaml(EXPERIMENTS / "gan_ring8.yaml")
    del data["loss"]
    with pytest.raises(ConfigError, match="loss: missing section"):
        validate(data, registry)
    with pytest.raises(ConfigError, match="does not exist"):
        load_yaml(tmp_path / "nope.yaml")


def test_metrics_default_to_those_that_apply(registry):
    data = load_yaml(EXPERIMENTS / "gan_digits.yaml")
    del data["metrics"]
    exp = validate(data, registry)
    assert {m.name for m in exp.metrics} == {"w1"} | IMAGE_METRICS
    data = load_yaml(EXPERIMENTS / "gan_ring8.yaml")
    del data["metrics"]
    assert {m.name for m in validate(data, registry).metrics} == {
        "modes",
        "hq_fraction",
        "reverse_kl",
        "w1",
    }


def test_a_dataset_that_cannot_load_is_bad_input_naming_it(registry, tmp_path):
    data = load_yaml(EXPERIMENTS / "gan_ring8.yaml")
    data["dataset"] = {"name": "image_folder", "root": str(tmp_path / "no-such-folder")}
    with pytest.raises(ConfigError) as info:
        validate(data, registry)
    assert info.value.field.startswith("dataset")
    assert "no-such-folder" in str(info.value)


def test_any_error_while_a_dataset_loads_becomes_one_message_naming_the_plugin():
    from pipeline import hookimpl
    from pipeline.host.registry import Registry
    from pipeline.types import Dataset

    class Broken(Dataset):
        name = "broken_files"

        def __init__(self, settings=None):
            super().__init__(settings)
            raise FileNotFoundError("/data/broken/train.npy")

        def sample(self, n, generator):  # never reached: loading fails first
            raise AssertionError("unreachable")

    class Provider:
        @hookimpl
        def register_datasets(self, register):
            register(Broken)

    registry = Registry()
    registry.load_entry_points()
    registry.add_module(Provider(), name="broken-test", package="tests", version="0")
    data = load_yaml(EXPERIMENTS / "gan_ring8.yaml")
    data["dataset"] = {"name": "broken_files"}
    with pytest.raises(ConfigError) as info:
        validate(data, registry)
    assert info.value.field == "dataset"
    assert "'broken_files' (tests 0) could not load its data" in str(info.value)
    assert "/data/broken/train.npy" in str(info.value)


def test_metric_settings_come_from_the_experiment_file(registry, tmp_path):
    from pipeline.training.trainer import Trainer

    exp = load_experiment(
        EXPERIMENTS / "gan_ring8.yaml",
        ["metrics=[modes, {name: w1, projections: 16}]"],
        registry=registry,
    )
    assert exp.resolved["metrics"][0] == "modes"
    assert exp.resolved["metrics"][1]["projections"] == 16
    trainer = Trainer(exp, workdir=tmp_path, progress=False)
    assert [m.name for m in trainer.metrics] == ["modes", "w1"]
    assert trainer.metrics[1].settings.projections == 16
    with pytest.raises(ConfigError) as info:
        load_experiment(
            EXPERIMENTS / "gan_ring8.yaml",
            ["metrics=[{name: w1, projections: 0}]"],
            registry=registry,
        )
    assert info.value.field == "metrics.w1.projections"
    with pytest.raises(ConfigError, match="unknown key"):
        load_experiment(
            EXPERIMENTS / "gan_ring8.yaml", ["metrics=[{name: w1, bogus: 1}]"], registry=registry
        )


def test_overriding_a_plugin_name_drops_the_file_settings_it_lacks(registry, capsys):
    # sngan_ring8 sets constraint.n_power_iterations, which gradient_penalty does not have
    exp = load_experiment(
        EXPERIMENTS / "sngan_ring8.yaml", ["constraint.name=gradient_penalty"], registry=registry
    )
    assert exp.resolved["constraint"] == {"name": "gradient_penalty", "weight": 10.0}
    err = capsys.readouterr().err
    assert "constraint.n_power_iterations" in err and "dropped" in err
    # a setting both plugins have is kept: Adam → RMSProp keeps lr, drops betas
    switched = load_experiment(
        EXPERIMENTS / "wgan_gp_grid25.yaml", ["optimizer.critic.name=rmsprop"], registry=registry
    )
    critic = switched.resolved["optimizer"]["critic"]
    assert critic["name"] == "rmsprop" and critic["lr"] == pytest.approx(1e-4)
    assert "betas" not in critic
    assert "optimizer.critic.betas" in capsys.readouterr().err


def test_settings_given_as_overrides_stay_strict_after_a_switch(registry):
    with pytest.raises(ConfigError) as info:
        load_experiment(
            EXPERIMENTS / "sngan_ring8.yaml",
            ["constraint.name=gradient_penalty", "constraint.n_power_iterations=2"],
            registry=registry,
        )
    assert info.value.field == "constraint.n_power_iterations"


def test_a_same_name_override_keeps_the_file_settings(registry, capsys):
    exp = load_experiment(
        EXPERIMENTS / "sngan_ring8.yaml", ["constraint.name=spectral_norm"], registry=registry
    )
    assert exp.resolved["constraint"]["n_power_iterations"] == 1
    assert capsys.readouterr().err == ""
