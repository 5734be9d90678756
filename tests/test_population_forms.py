"""Population forms: the built-in optimizers against torch's own, member by member, and the
test kit's check of a form against single trainings."""

from __future__ import annotations

import pytest
import torch


@pytest.mark.parametrize(
    ("name", "settings"),
    [
        (
            "rmsprop",
            [{"lr": 1e-3, "momentum": 0.5}, {"lr": 1e-2, "alpha": 0.9, "weight_decay": 0.1}],
        ),
        (
            "adam",
            [{"lr": 1e-3, "fused": False}, {"lr": 1e-2, "betas": (0.0, 0.9), "weight_decay": 0.1}],
        ),
        (
            "sgd",
            [{"lr": 1e-2, "momentum": 0.9, "nesterov": True}, {"lr": 1e-1, "weight_decay": 0.1}],
        ),
    ],
)
def test_population_optimizers_step_as_torch_does_per_member(registry, name, settings):
    """Each member of a population optimizer follows its own torch optimizer over 20 steps
    of gradients from 1e-2 to 1e2; a member masked out of a step does not move."""
    cls = registry.get("optimizer", name).cls
    made = [cls.Settings(**s) for s in settings]
    generator = torch.Generator().manual_seed(0)
    init = torch.randn(3, 5, 4, generator=generator)
    stacked = init.clone().requires_grad_(True)
    singles = [init[k].clone().requires_grad_(True) for k in range(2)]
    form = cls.population_form([stacked], [*made, made[0]])
    torch_optimizers = [cls(s).build([singles[k]]) for k, s in enumerate(made)]
    for step in range(20):
        grad = torch.randn(3, 5, 4, generator=generator) * 10.0 ** (step % 5 - 2)
        stacked.grad = grad.clone()
        form.step(torch.tensor([True, True, False]))
        for k, optimizer in enumerate(torch_optimizers):
            singles[k].grad = grad[k].clone()
            optimizer.step()
    for k in range(2):
        assert torch.allclose(stacked[k], singles[k], rtol=1e-5, atol=1e-6)
    assert torch.equal(stacked[2], init[2])
    assert not torch.allclose(stacked[0], init[0], atol=1e-3)


def test_the_kit_checks_a_population_form_against_single_trainings():
    from pipeline.testing import check_population

    worst = check_population(
        constraint="gradient_penalty",
        members=[{"constraint": {"weight": 0.1}}, {"constraint": {"weight": 10}}, {}],
    )
    assert worst <= 1e-4


def test_the_kit_catches_a_population_form_that_ignores_per_member_settings():
    """A clip form that clips every member with member 0's c: the kit names it."""
    from pipeline.testing import PluginContractError, check_population
    from pipeline_plugins.constraints.weight_clipping import (
        PopulationWeightClipping,
        WeightClipping,
    )

    class FirstClipOnly(PopulationWeightClipping):
        def after_critic_step(self, critic) -> None:
            self.settings = [self.settings[0]] * len(self.settings)
            super().after_critic_step(critic)

    class SloppyClipping(WeightClipping):
        name = "sloppy_clipping"

        @classmethod
        def population_form(cls, settings):
            return FirstClipOnly(settings)

    wrong = r"constraint 'sloppy_clipping'.*member 1's loss/critic"
    with pytest.raises(PluginContractError, match=wrong):
        check_population(
            constraint=SloppyClipping,
            optimizer="rmsprop",
            members=[{"constraint": {"clip": 0.01}}, {"constraint": {"clip": 0.5}}],
        )
