"""The plugin registry: built-ins through entry points, one name per plugin, clear errors."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from pipeline import hookimpl
from pipeline.errors import PluginError
from pipeline.host.blame import PluginRuntimeError, plugin_failure
from pipeline.host.registry import Registry, RegistryOptions
from pipeline.types import Constraint, Loss, Settings
from tests.conftest import GAN_PIPELINE

BUILTINS = {
    "loss": {"bce", "wgan", "hinge", "least_squares"},
    "constraint": {"none", "weight_clipping", "gradient_penalty", "spectral_norm"},
    "optimizer": {"adam", "rmsprop", "sgd"},
    "dataset": {"ring8", "grid25", "gaussians8", "gaussians25", "swissroll", "digits"},
    "model": {"mlp", "dcgan"},
    "metric": {"modes", "hq_fraction", "reverse_kl", "w1"},
}


def loaded_modules(registry: Registry) -> set[str]:
    return {source.name for source in registry.sources()}


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
    assert f"loss-bce ({GAN_PIPELINE})" in text
    assert "clash (clash-pkg 1.2)" in text
    assert "pipeline --block clash" in text and "GAN_PIPELINE_BLOCK=clash" in text


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


def test_hook_with_no_matching_spec_is_reported_not_raised():
    registry = fresh()
    assert registry.add_module(_Typo(), name="typo", package="typo-pkg", version="1") == []
    (source,) = [s for s in registry.sources() if s.name == "typo"]
    assert source.unknown_hooks == ("register_loses",) and source.hooks == ()
    (problem,) = registry.problems()
    assert problem.startswith("plugin 'typo' (typo-pkg 1) implements 'register_loses'")
    assert "did you mean register_losses?" in problem


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


def _provider(*classes, hook="register_losses"):
    class Provider:
        pass

    def impl(self, register):
        for cls in classes:
            register(cls)

    setattr(Provider, hook, hookimpl(impl))
    return Provider()


class _NoGenerator(Loss):
    name = "no_generator"

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return fake_scores.mean() - real_scores.mean()


class _BadSettings(_Mean):
    name = "bad_settings"
    Settings = dict  # type: ignore[assignment]


class _BadName(_Mean):
    name = "two words"


class _NoName(_Mean):
    name = ""


INVALID = [
    (_NoGenerator, "lacks what a loss requires: it does not implement generator_loss"),
    (_BadSettings, "whose Settings is <class 'dict'>, not a subclass of pipeline.types.Settings"),
    (_BadName, "with the name 'two words': a name is letters, digits"),
    (_NoName, "without a 'name'"),
    (_Mean(), "registered an instance of _Mean as a loss; register the class itself"),
]


@pytest.mark.parametrize(("registered", "words"), INVALID)
def test_a_class_lacking_what_its_kind_requires_is_refused_naming_the_plugin(registered, words):
    registry = fresh()
    with pytest.raises(PluginError) as info:
        registry.add_module(_provider(registered), name="pkg-mod", package="pkg", version="0.9")
    text = str(info.value)
    assert text.startswith("plugin 'pkg-mod' (pkg 0.9) registered ")
    assert words in text
    assert text.endswith("block it with `pipeline --block pkg-mod …` or GAN_PIPELINE_BLOCK=pkg-mod")
    assert "pkg-mod" not in loaded_modules(registry)


def test_a_hook_that_raises_is_named():
    class Raising:
        @hookimpl
        def register_losses(self, register):
            raise KeyError("missing config")

    with pytest.raises(
        PluginError,
        match=r"plugin 'raising' \(r-pkg 2\) raised in its hook "
        r"register_losses: KeyError: 'missing config'; block it",
    ):
        fresh().add_module(Raising(), name="raising", package="r-pkg", version="2")


def test_a_hook_with_arguments_outside_the_contract_is_named():
    class WrongArgs:
        @hookimpl
        def register_losses(self, register, extra):
            pass

    with pytest.raises(
        PluginError,
        match=r"plugin 'wrong' \(w 1\) has a hook implementation "
        r"that does not fit the contract",
    ):
        fresh().add_module(WrongArgs(), name="wrong", package="w", version="1")


def test_registration_is_all_or_nothing():
    class Good(_Mean):
        name = "good_one"

    registry = fresh()
    before = registry.names("loss")
    with pytest.raises(PluginError, match="two plugins claim the loss name 'good_one'"):
        registry.add_module(_provider(Good, Good), name="twice", package="t", version="1")
    assert registry.names("loss") == before and "twice" not in loaded_modules(registry)
    # and the same module can be registered once it is fixed
    (info,) = registry.add_module(_provider(Good), name="twice", package="t", version="1")
    assert registry.get("loss", "good_one") is info


def test_classes_register_and_unregister():
    class Temporary(_Mean):
        name = "temporary"

    class Clamp(Constraint):
        name = "clamp_for_a_while"

    registry = fresh()
    infos = registry.add_classes(Temporary, Clamp, name="tmp", package="tmp-pkg", version="0")
    assert {(i.kind, i.name) for i in infos} == {
        ("loss", "temporary"),
        ("constraint", "clamp_for_a_while"),
    }
    assert registry.get("loss", "temporary").hooks == ("register_constraints", "register_losses")
    removed = registry.unregister("tmp")
    assert {i.name for i in removed} == {"temporary", "clamp_for_a_while"}
    assert not registry.has("loss", "temporary") and registry.has("loss", "bce")
    with pytest.raises(PluginError, match="no plugin module 'tmp' is registered"):
        registry.unregister("tmp")
    with pytest.raises(PluginError, match="is not a plugin class"):
        registry.add_classes(Settings)


def test_autoload_off_keeps_the_builtins():
    registry = Registry(RegistryOptions(autoload=False)).load()
    for kind, names in BUILTINS.items():
        assert names <= set(registry.names(kind)), kind
    assert all(i.builtin for i in registry.all())


class _Helper(Loss):
    name = "helper"

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return _inner(real_scores)

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        return -fake_scores.mean()


def _inner(x: Tensor) -> Tensor:
    raise ArithmeticError("deep inside")


def test_an_exception_is_blamed_on_the_plugin_the_host_called():
    registry = fresh()
    (info,) = registry.add_classes(_Helper, name="helper-mod", package="h-pkg", version="4.2")
    other = registry.get("loss", "bce")
    try:
        _Helper().critic_loss(torch.zeros(2), torch.zeros(2))
    except ArithmeticError as exc:
        failure = plugin_failure(exc, [other, info])
    assert isinstance(failure, PluginRuntimeError) and failure.info is info
    text = str(failure)
    assert text.startswith("loss 'helper' (h-pkg 4.2) raised ArithmeticError: deep inside (at ")
    assert "test_registry.py:" in text and "in _inner()" in text  # the deepest plugin line
    assert "block it with `pipeline --block helper-mod" in text
