"""The plugin registry: built-ins through entry points, one name per plugin, clear errors."""

from __future__ import annotations

import pytest
from torch import Tensor

from pipeline import hookimpl
from pipeline.errors import PluginError
from pipeline.registry import Registry
from pipeline.types import Loss

BUILTINS = {
    "loss": {"bce", "wgan", "hinge", "least_squares"},
    "constraint": {"none", "weight_clipping", "gradient_penalty", "spectral_norm"},
    "optimizer": {"adam", "rmsprop", "sgd"},
    "dataset": {"ring8", "grid25", "gaussians8", "gaussians25", "swissroll", "digits"},
    "model": {"mlp", "dcgan"},
    "metric": {"modes", "hq_fraction", "reverse_kl", "w1"},
}


def fresh() -> Registry:
    registry = Registry()
    registry.load_entry_points()
    return registry


def test_builtins_arrive_through_the_entry_point_group():
    registry = fresh()
    for kind, names in BUILTINS.items():
        assert names <= set(registry.names(kind)), kind
    info = registry.get("loss", "bce")
    assert info.package == "gan-pipeline" and info.builtin
    assert info.module == "loss-bce"
    assert info.hooks == ("register_losses",)


class _Mean(Loss):
    name = "bce"  # clashes with the built-in

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return fake_scores.mean() - real_scores.mean()

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        return -fake_scores.mean()


class _Clashing:
    @hookimpl
    def register_losses(self, register):
        register(_Mean)


def test_two_plugins_claiming_one_name_is_an_error_naming_both():
    registry = fresh()
    with pytest.raises(PluginError) as info:
        registry.add_module(_Clashing(), name="clash", package="clash-pkg", version="1.2")
    text = str(info.value)
    assert "'bce'" in text
    assert "loss-bce (gan-pipeline 0.1.0)" in text
    assert "clash (clash-pkg 1.2)" in text


class _NotALoss:
    name = "oops"


class _WrongKind:
    @hookimpl
    def register_losses(self, register):
        register(_NotALoss)


def test_registering_something_that_is_not_a_loss_is_refused():
    with pytest.raises(PluginError, match=r"not a subclass of pipeline\.types\.Loss"):
        fresh().add_module(_WrongKind(), name="wrong", package="wrong-pkg", version="0.1")


class _Typo:
    @hookimpl
    def register_loses(self, register):  # matches no hook
        register(_Mean)


def test_hook_with_no_matching_spec_is_reported():
    from pluggy import PluginValidationError

    with pytest.raises(PluginValidationError, match="register_loses"):
        fresh().add_module(_Typo(), name="typo")


def test_unknown_name_lists_what_is_available():
    with pytest.raises(PluginError, match="unknown loss 'nope'; available: bce, hinge"):
        fresh().get("loss", "nope")


def test_a_registered_test_plugin_is_usable_by_name():
    class Renamed(_Mean):
        name = "mean_difference"

    class Provider:
        @hookimpl
        def register_losses(self, register):
            register(Renamed)

    registry = fresh()
    registry.add_module(Provider(), name="provider", package="provider-pkg", version="3")
    info = registry.get("loss", "mean_difference")
    assert info.cls is Renamed and info.origin == "provider-pkg 3"
