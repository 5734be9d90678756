"""The hook contract itself: one table of kinds, abstract base classes, hooks called through
pluggy, and built-in plugins that import nothing but the contract."""

from __future__ import annotations

import ast

import pytest
from torch import Tensor

from pipeline import hookspecs
from pipeline.host.registry import Registry, RegistryOptions
from pipeline.types import KINDS, Dataset, ImageDataset, Loss, Plugin, kind_of
from tests.conftest import ROOT


def test_each_kind_has_its_base_class_and_its_own_hook_of_the_contract():
    specs = {
        name for name in dir(hookspecs) if hasattr(getattr(hookspecs, name), "gan_pipeline_spec")
    }
    assert sorted(kind.hook for kind in KINDS.values()) == sorted(specs)
    for name, kind in KINDS.items():
        assert kind.name == name and kind.base.kind == name
        assert kind_of(kind.base) is kind and issubclass(kind.base, Plugin)
    assert kind_of(int) is None and kind_of("loss") is None


class _Half(Loss):
    name = "half"

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return fake_scores.mean() - real_scores.mean()


def test_what_a_kind_requires_is_abstract():
    assert _Half.__abstractmethods__ == frozenset({"generator_loss"})
    with pytest.raises(TypeError, match=r"abstract method '?generator_loss"):
        _Half()
    required = {name: sorted(kind.base.__abstractmethods__) for name, kind in KINDS.items()}
    assert required == {
        "loss": ["critic_loss", "generator_loss"],
        "constraint": [],
        "optimizer": ["build"],
        "dataset": ["sample"],
        "model": ["build"],
        "metric": ["compute"],
    }


def test_hooks_are_called_through_pluggy_one_module_at_a_time():
    registry = Registry(RegistryOptions(autoload=False))
    calls: list[tuple[str, tuple[str, ...]]] = []
    undo = registry.manager.add_hookcall_monitoring(
        before=lambda hook, impls, kwargs: calls.append(
            (hook, tuple(i.plugin_name for i in impls))
        ),
        after=lambda outcome, hook, impls, kwargs: None,
    )
    try:
        registry.load()
    finally:
        undo()
    assert ("register_losses", ("loss-bce",)) in calls
    assert ("register_models", ("model-mlp",)) in calls
    called = sorted(name for _, names in calls for name in names)
    assert called == sorted(source.name for source in registry.sources())  # each once


def test_the_image_datasets_declare_the_image_dataset_contract():
    registry = Registry(RegistryOptions(autoload=False)).load()
    classes = {name: registry.get("dataset", name).cls for name in registry.names("dataset")}
    images = {name for name, cls in classes.items() if issubclass(cls, ImageDataset)}
    assert images == {"digits", "mnist", "fashion_mnist", "image_folder"}
    assert issubclass(ImageDataset, Dataset) and ImageDataset.heldout_images is None


ALLOWED = {"pipeline": {"hookimpl"}, "pipeline.types": None}


def test_builtin_plugins_import_only_the_contract():
    bad = []
    for path in sorted((ROOT / "plugins").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [(alias.name, None) for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                modules = [(node.module, {alias.name for alias in node.names})]
            else:
                continue
            for module, names in modules:
                if module.split(".")[0] != "pipeline":
                    continue
                allowed = ALLOWED.get(module, set())
                if module not in ALLOWED or (allowed is not None and not names <= allowed):
                    bad.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {module}")
    assert bad == []
