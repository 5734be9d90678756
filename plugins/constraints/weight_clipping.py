"""Weight clipping: the original WGAN's crude Lipschitz constraint.

Arjovsky, Chintala & Bottou 2017, "Wasserstein GAN", Algorithm 1: after every critic
update, clamp every critic parameter to ``[-c, c]`` with ``c = 0.01``. The paper itself
calls this "a clearly terrible way to enforce a Lipschitz constraint" (§3): too small a
``c`` makes gradients vanish, too large a ``c`` makes the critic slow to train.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline import hookimpl
from pipeline.types import Constraint, PopulationConstraint, Settings, StackedNet

if TYPE_CHECKING:
    from torch import nn


class WeightClippingSettings(Settings):
    #: clipping bound c (Arjovsky et al. 2017, Algorithm 1: c = 0.01)
    clip: float = Field(default=0.01, gt=0)


class WeightClipping(Constraint):
    name = "weight_clipping"
    description = "clamp every critic weight to [-c, c] after each step (Arjovsky 2017)"
    Settings = WeightClippingSettings

    def after_critic_step(self, critic: nn.Module) -> None:
        clip_parameters(critic, self.settings.clip)

    @classmethod
    def population_form(cls, settings: Sequence[Settings]) -> PopulationConstraint:
        return PopulationWeightClipping(settings)


class PopulationWeightClipping(PopulationConstraint):
    """Weight clipping of K stacked critics, each member with its own ``c``: after a
    member's critic step, its parameters are clamped to ``[-c_k, c_k]``."""

    per_member = ("clip",)

    def after_critic_step(self, critic: StackedNet) -> None:
        import torch

        with torch.no_grad():
            params = critic.parameters()
            clip = torch.tensor(
                [s.clip for s in self.settings], device=params[0].device, dtype=params[0].dtype
            )
            for param in params:
                shape = (-1,) + (1,) * (param.dim() - 1)
                bound = clip.view(shape)
                clamped = torch.clamp(param, -bound, bound)
                param.copy_(torch.where(critic.mask.view(shape), clamped, param))


def clip_parameters(module: nn.Module, clip: float) -> None:
    """Clamp every parameter of ``module`` in place to ``[-clip, clip]``."""
    import torch

    with torch.no_grad():
        for param in module.parameters():
            param.clamp_(-clip, clip)


@hookimpl
def register_constraints(register: Callable[[type[Constraint]], None]) -> None:
    register(WeightClipping)
