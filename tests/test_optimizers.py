"""The optimizer plugins: paper defaults, validation, and a real step on a tiny model."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from pipeline.types import Optimizer
from pipeline_plugins.optimizers import adam, rmsprop, sgd
from pipeline_plugins.optimizers.adam import Adam
from pipeline_plugins.optimizers.rmsprop import RMSProp
from pipeline_plugins.optimizers.sgd import SGD


def take_one_step(plugin: Optimizer) -> tuple[nn.Module, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    opt = plugin.build(model.parameters())
    assert isinstance(opt, torch.optim.Optimizer)
    x = torch.randn(8, 3)
    loss = (model(x) - 1.0).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    return model, before


@pytest.mark.parametrize(
    "plugin",
    [
        Adam(),
        RMSProp(),
        SGD(),
        Adam(Adam.Settings(lr=1e-3, betas=(0.0, 0.9), weight_decay=1e-4)),
        RMSProp(RMSProp.Settings(momentum=0.9)),
        SGD(SGD.Settings(momentum=0.9, nesterov=True, weight_decay=1e-4)),
    ],
    ids=["adam", "rmsprop", "sgd", "adam-custom", "rmsprop-momentum", "sgd-nesterov"],
)
def test_one_step_changes_every_parameter(plugin: Optimizer) -> None:
    model, before = take_one_step(plugin)
    for name, param in model.named_parameters():
        assert not torch.equal(param.detach(), before[name]), name


def test_adam_defaults_reach_torch() -> None:
    plugin = Adam()
    assert plugin.settings.lr == 2e-4
    assert plugin.settings.betas == (0.5, 0.999)
    group = plugin.build(nn.Linear(2, 1).parameters()).param_groups[0]
    assert isinstance(plugin.build(nn.Linear(2, 1).parameters()), torch.optim.Adam)
    assert group["lr"] == 2e-4
    assert group["betas"] == (0.5, 0.999)
    assert group["eps"] == 1e-8
    assert group["weight_decay"] == 0.0


def test_adam_first_step_has_size_lr() -> None:
    # Adam's first update is lr * sign(grad) (up to eps), whatever the gradient scale
    model, before = take_one_step(Adam(Adam.Settings(lr=1e-2)))
    for name, param in model.named_parameters():
        step = (param.detach() - before[name]).abs()
        assert torch.allclose(step, torch.full_like(step, 1e-2), rtol=1e-4), name


def test_rmsprop_defaults_reach_torch() -> None:
    opt = RMSProp().build(nn.Linear(2, 1).parameters())
    assert isinstance(opt, torch.optim.RMSprop)
    group = opt.param_groups[0]
    assert group["lr"] == 5e-5
    assert group["momentum"] == 0.0
    assert group["alpha"] == 0.99
    assert group["eps"] == 1e-8


def test_sgd_defaults_and_exact_step() -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 1)
    before = model.weight.detach().clone()
    opt = SGD().build(model.parameters())
    assert isinstance(opt, torch.optim.SGD)
    group = opt.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"]) == (1e-3, 0.0, False)
    model(torch.randn(4, 3)).sum().backward()
    grad = model.weight.grad.clone()
    opt.step()
    assert torch.allclose(model.weight.detach(), before - 1e-3 * grad)


def test_betas_accept_a_list_from_yaml() -> None:
    assert Adam.Settings(betas=[0.0, 0.9]).betas == (0.0, 0.9)


@pytest.mark.parametrize("lr", [0.0, -1e-4])
@pytest.mark.parametrize("cls", [Adam, RMSProp, SGD])
def test_non_positive_lr_is_rejected(cls: type[Optimizer], lr: float) -> None:
    with pytest.raises(ValidationError):
        cls.Settings(lr=lr)


@pytest.mark.parametrize("betas", [(0.5, 1.0), (1.0, 0.9), (0.5, 1.5), (-0.1, 0.9)])
def test_betas_outside_unit_interval_are_rejected(betas: tuple[float, float]) -> None:
    with pytest.raises(ValidationError, match=r"must lie in \[0, 1\)"):
        Adam.Settings(betas=betas)


def test_betas_need_two_values() -> None:
    with pytest.raises(ValidationError):
        Adam.Settings(betas=(0.5, 0.9, 0.99))


@pytest.mark.parametrize(
    ("cls", "kw"),
    [
        (Adam, {"weight_decay": -1.0}),
        (Adam, {"eps": -1e-8}),
        (RMSProp, {"momentum": -0.1}),
        (RMSProp, {"alpha": 1.0}),
        (SGD, {"momentum": -0.5}),
        (SGD, {"weight_decay": -1e-3}),
        (SGD, {"nesterov": True}),  # Nesterov without momentum
        (Adam, {"learning_rate": 1e-3}),  # unknown key
    ],
)
def test_invalid_settings_are_rejected(cls: type[Optimizer], kw: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        cls.Settings(**kw)


@pytest.mark.parametrize(
    ("module", "cls", "name"),
    [(adam, Adam, "adam"), (rmsprop, RMSProp, "rmsprop"), (sgd, SGD, "sgd")],
)
def test_each_module_registers_its_optimizer(
    module: object, cls: type[Optimizer], name: str
) -> None:
    registered: list[type[Optimizer]] = []
    module.register_optimizers(register=registered.append)
    assert registered == [cls]
    assert cls.name == name and issubclass(cls, Optimizer) and cls.description


def test_adam_uses_the_fused_kernel_on_cpu_by_default_and_can_opt_out():
    from pipeline_plugins.optimizers.adam import Adam

    model = torch.nn.Linear(3, 2)
    assert Adam().build(model.parameters()).defaults["fused"] is True
    off = Adam(Adam.Settings(fused=False)).build(model.parameters())
    assert not off.defaults["fused"]
