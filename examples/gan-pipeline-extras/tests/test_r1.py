"""The R1 constraint, through gan-pipeline's test kit and against its closed form."""

from __future__ import annotations

import pytest
import torch
from gan_pipeline_extras.r1 import R1
from torch import nn

from pipeline.host.registry import Registry, RegistryOptions, default_registry
from pipeline.testing import check_constraint, check_trains


def test_keeps_the_constraint_contract():
    check_constraint(R1)
    check_constraint(R1, settings={"gamma": 0.5})
    check_constraint(R1, data_shape=(1, 8, 8))


def test_equals_half_gamma_times_the_squared_gradient_norm():
    # a linear critic D(x) = w·x + b has ∇D = w everywhere: R1 = (γ/2)·‖w‖²
    critic = nn.Linear(3, 1)
    with torch.no_grad():
        critic.weight.copy_(torch.tensor([[1.0, -2.0, 2.0]]))
    real, fake = torch.randn(16, 3), torch.randn(16, 3)
    value = R1(R1.Settings(gamma=10.0)).penalty(critic, real, fake)
    assert value.item() == pytest.approx(0.5 * 10.0 * 9.0)


def test_looks_at_real_data_only():
    torch.manual_seed(0)
    critic = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 1))
    real = torch.randn(32, 2)
    r1 = R1()
    a = r1.penalty(critic, real, torch.randn(32, 2))
    b = r1.penalty(critic, real, 100 * torch.randn(32, 2))
    c = r1.penalty(critic, real + 1.0, torch.randn(32, 2))
    assert a.item() == b.item()
    assert a.item() != c.item()


def test_gamma_zero_adds_no_penalty():
    assert R1(R1.Settings(gamma=0.0)).penalty(nn.Linear(2, 1), torch.randn(4, 2), None) is None


def test_gamma_cannot_be_negative():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="gamma"):
        R1.Settings(gamma=-1.0)


def test_is_found_through_its_entry_point():
    registry = Registry(RegistryOptions()).load()
    info = registry.get("constraint", "r1")
    assert info.cls is R1
    assert (info.package, info.builtin, info.module) == ("gan-pipeline-extras", False, "r1")


def test_trains_with_a_bce_critic():
    result = check_trains(loss="bce", constraint=R1, steps=10)
    steps, penalties = result.history["penalty"]
    assert steps[-1] == 10 and penalties[-1] > 0


def test_a_variant_registers_for_one_test(register_plugin):
    class StrongR1(R1):
        name = "r1_strong"
        description = "R1 with γ = 100"

    (info,) = register_plugin(StrongR1)
    assert default_registry().get("constraint", "r1_strong") is info
    check_trains(loss="bce", constraint="r1_strong", steps=4)
