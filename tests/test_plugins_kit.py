"""The plugin author's test kit: it passes on every built-in plugin, and fails on broken
plugins with a message that names the plugin and the rule it broke."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline import testing
from pipeline.host.registry import Registry, RegistryOptions, default_registry
from pipeline.testing import (
    PluginContractError,
    check_constraint,
    check_dataset,
    check_loss,
    check_metric,
    check_model,
    check_optimizer,
    check_plugin,
    check_trains,
    registered,
)
from pipeline.types import Constraint, Dataset, Loss, Metric, Model, ModelPair, Optimizer

#: the kit's pytest fixture, made available to this module's tests
register_plugin = testing.register_plugin

BUILTINS = Registry(RegistryOptions(autoload=False)).load()
#: data shapes for models that do not take 2-D points
MODEL_SHAPES = {"dcgan": (1, 8, 8)}


def _dataset_for(metric_cls) -> type[Dataset]:
    for name in ("ring8", "grid25", "digits", *BUILTINS.names("dataset")):
        dataset = BUILTINS.get("dataset", name).cls
        if metric_cls().applies_to(dataset()):
            return dataset
    raise AssertionError(f"no built-in dataset for metric {metric_cls.name!r}")


def _write_idx(path: Path, array: np.ndarray) -> None:
    """An IDX file as MNIST distributes them: 00 00 08 ndim, big-endian sizes, bytes."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(d).to_bytes(4, "big") for d in array.shape
    )
    path.write_bytes(header + array.astype(np.uint8).tobytes())


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory) -> dict[str, dict[str, str]]:
    """Small real data files for the built-in datasets that read local files."""
    from PIL import Image

    rng = np.random.default_rng(0)
    idx = tmp_path_factory.mktemp("idx")
    _write_idx(idx / "train-images-idx3-ubyte", rng.integers(0, 256, (40, 28, 28)))
    _write_idx(idx / "train-labels-idx1-ubyte", rng.integers(0, 10, (40,)))
    folder = tmp_path_factory.mktemp("images")
    for i in range(6):
        Image.fromarray(rng.integers(0, 256, (8, 8), dtype=np.uint8)).save(folder / f"{i}.png")
    return {
        "mnist": {"root": str(idx)},
        "fashion_mnist": {"root": str(idx)},
        "image_folder": {"root": str(folder)},
    }


@pytest.mark.parametrize("info", BUILTINS.all(), ids=lambda i: f"{i.kind}-{i.name}")
def test_the_kit_passes_on_every_builtin(info, data_roots):
    kwargs: dict = {}
    if info.kind == "dataset" and info.name in data_roots:
        kwargs["settings"] = data_roots[info.name]
    if info.kind == "metric":
        kwargs["dataset"] = _dataset_for(info.cls)
    if info.kind == "model":
        kwargs["data_shape"] = MODEL_SHAPES.get(info.name, (2,))
    check_plugin(info.cls, **kwargs)


# -- broken plugins: each check fails, naming the plugin ---------------------------------


class _WGAN(Loss):
    name = "wgan_like"

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return fake_scores.mean() - real_scores.mean()

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        return -fake_scores.mean()


class VectorLoss(_WGAN):
    name = "vector_loss"

    def critic_loss(self, real_scores, fake_scores):
        return fake_scores - real_scores  # forgot .mean()


class NaiveBCE(_WGAN):
    name = "naive_bce"

    def critic_loss(self, real_scores, fake_scores):  # log(sigmoid) underflows to -inf
        return -(
            torch.log(torch.sigmoid(real_scores)) + torch.log(1 - torch.sigmoid(fake_scores))
        ).mean()


class DetachedLoss(_WGAN):
    name = "detached_loss"

    def generator_loss(self, fake_scores, real_scores):
        return -fake_scores.detach().mean()


class IgnoresFake(_WGAN):
    name = "ignores_fake"

    def critic_loss(self, real_scores, fake_scores):
        return -real_scores.mean()


class Reversed(_WGAN):
    name = "reversed"

    def critic_loss(self, real_scores, fake_scores):
        return real_scores.mean() - fake_scores.mean()

    def generator_loss(self, fake_scores, real_scores):
        return fake_scores.mean()


class Freezes(Constraint):
    name = "freezes"

    def wrap_critic(self, critic):
        for p in critic.parameters():
            p.requires_grad_(False)
        return critic


class Restores(Constraint):
    name = "restores"

    def wrap_critic(self, critic):
        self.saved = [p.detach().clone() for p in critic.parameters()]
        return critic

    def after_critic_step(self, critic):
        with torch.no_grad():
            for p, saved in zip(critic.parameters(), self.saved, strict=True):
                p.copy_(saved)


class NaNPenalty(Constraint):
    name = "nan_penalty"

    def penalty(self, critic, real, fake):
        return critic(real).mean() * float("nan")


class DetachedPenalty(Constraint):
    name = "detached_penalty"

    def penalty(self, critic, real, fake):
        with torch.no_grad():
            return critic(real).pow(2).mean()


class InPlacePenalty(Constraint):
    name = "in_place_penalty"

    def penalty(self, critic, real, fake):
        x = real.requires_grad_(True)  # mutates the loop's batch
        (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
        return grad.pow(2).sum(1).mean()


class FrozenOptimizer(Optimizer):
    name = "frozen_optimizer"

    def build(self, params):
        return torch.optim.SGD(params, lr=0.0)


class PartialOptimizer(Optimizer):
    name = "partial_optimizer"

    def build(self, params):
        return torch.optim.SGD(list(params)[:1], lr=0.1)


class GlobalRNG(Dataset):
    name = "global_rng"

    def sample(self, n, generator):
        return torch.randn(n, 2)


class WrongShape(Model):
    name = "wrong_shape"

    def build(self, data_shape):
        return ModelPair(generator=nn.Linear(2, 3), critic=nn.Linear(3, 1), noise_dim=2)


class BatchDependent(Model):
    name = "batch_dependent"

    def build(self, data_shape):
        critic = nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Linear(4, 1))
        return ModelPair(generator=nn.Linear(2, 2), critic=critic, noise_dim=2)


class NaNMetric(Metric):
    name = "nan_metric"

    def compute(self, samples, dataset):
        return float("nan")


def _ring8():
    return BUILTINS.get("dataset", "ring8").cls


BROKEN = [
    (check_loss, VectorLoss, "scale 1 returned a tensor of shape (64,), not a scalar"),
    (check_loss, NaiveBCE, "critic_loss on random logits of scale 50 returned inf"),
    (check_loss, DetachedLoss, "generator_loss on random logits of scale 1 does not depend"),
    (check_loss, IgnoresFake, "critic_loss on random logits of scale 1, fake_scores: no gradient"),
    (check_loss, Reversed, "critic_loss(real=+1, fake=-1) = 2 is not below"),
    (check_constraint, Freezes, "after wrap_critic the critic has no trainable parameters"),
    (check_constraint, Restores, "the critic did not change in 3 optimizer steps"),
    (check_constraint, NaNPenalty, "penalty at critic step 0 returned nan, not a finite value"),
    (check_constraint, DetachedPenalty, "penalty at critic step 0 does not depend on the critic"),
    (check_constraint, InPlacePenalty, "penalty at critic step 0 set requires_grad on the batch"),
    (check_optimizer, FrozenOptimizer, "2 steps left every parameter unchanged"),
    (check_optimizer, PartialOptimizer, "build did not hand every parameter it was given"),
    (check_dataset, GlobalRNG, "sample() used torch's global RNG"),
    (check_model, WrongShape, "the generator gave (8, 3), expected (8, 2)"),
    (check_model, BatchDependent, "critic_batch_independent is True but scoring a batch at once"),
]


@pytest.mark.parametrize(("check", "plugin", "words"), BROKEN, ids=lambda x: getattr(x, "name", ""))
def test_the_kit_fails_clearly_on_a_broken_plugin(check, plugin, words):
    with pytest.raises(AssertionError) as info:
        check(plugin)
    text = str(info.value)
    assert isinstance(info.value, PluginContractError)
    assert text.startswith(
        f"{plugin.kind} {plugin.name!r} (tests.test_plugins_kit.{plugin.__qualname__}): "
    )
    assert words in text


def test_the_metric_check_fails_clearly():
    with pytest.raises(
        PluginContractError, match=r"^metric 'nan_metric' \(.*\): compute returned nan"
    ):
        check_metric(NaNMetric, _ring8())
    modes = BUILTINS.get("metric", "modes").cls
    with pytest.raises(PluginContractError, match="does not apply to dataset 'digits'"):
        check_metric(modes, BUILTINS.get("dataset", "digits").cls)


def test_settings_are_checked_with_the_plugin_named():
    gp = BUILTINS.get("constraint", "gradient_penalty").cls
    check_constraint(gp, settings={"weight": 0.1})
    with pytest.raises(PluginContractError, match=r"^constraint 'gradient_penalty' .*refuse"):
        check_constraint(gp, settings={"weight": -1})


def test_check_trains_names_the_plugins_of_a_failing_training():
    class Explodes(_WGAN):
        name = "explodes"

        def critic_loss(self, real_scores, fake_scores):
            return F.softplus(fake_scores).mean() / 0.0

    with pytest.raises(PluginContractError) as info:
        check_trains(loss=Explodes, steps=4)
    text = str(info.value)
    assert "training with " in text and "loss 'explodes' (test)" in text
    assert re.search(r"loss/critic became (nan|inf) at generator step 1", text)
    assert not default_registry().has("loss", "explodes")  # registered for the call only


def test_registered_lasts_for_the_block_only_even_when_it_raises():
    registry = default_registry()

    class Short(_WGAN):
        name = "short_lived"

    with (
        pytest.raises(RuntimeError),
        registered(Short, package="short-pkg", version="1.0") as infos,
    ):
        (info,) = infos
        assert registry.get("loss", "short_lived") is info and info.origin == "short-pkg 1.0"
        raise RuntimeError("the test failed")
    assert not registry.has("loss", "short_lived")


class _Fixtured(_WGAN):
    name = "fixtured"


def test_the_fixture_registers_for_one_test(register_plugin):
    (info,) = register_plugin(_Fixtured)
    assert default_registry().get("loss", "fixtured") is info
    check_trains(loss="fixtured", steps=2)


def test_the_fixture_unregistered_after_the_previous_test():
    # pytest runs this after the test above (file order): the fixture has unregistered it
    assert not default_registry().has("loss", "fixtured")
