"""The R1 penalty: the squared gradient norm of the critic on real data only.

Mescheder, Geiger & Nowozin 2018, "Which Training Methods for GANs do actually
Converge?" (ICML), eq. (9): ``R1 = (γ/2) · E_{x ~ p_data} ‖∇_x D(x)‖²``, added to the
critic's loss. Unlike the gradient penalty of WGAN-GP it looks at real samples only (no
interpolates, no fake batch) and pulls the gradient towards zero, not one; the paper
shows it makes GAN training locally convergent. The default ``γ = 10`` is the weight of
the paper's image experiments. Beware: the authors' code (LMescheder/GAN_stability,
``gan_training/train.py``, ``reg_param: 10.`` in ``configs/default.yaml``) multiplies
``E ‖∇D‖²`` by ``reg_param`` without the ½, which is ``γ = 20`` in the paper's notation;
set ``gamma: 20`` to match that code.

The gradient is taken with ``create_graph=True`` so that the penalty trains the critic;
it is computed on a detached copy of the batch, which is left as it was.
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import Tensor, nn

from pipeline import hookimpl
from pipeline.types import Constraint, Settings


class R1Settings(Settings):
    #: γ of (γ/2)·E‖∇D(x_real)‖² (Mescheder et al. 2018: 10; their code's reg_param 10 is γ = 20)
    gamma: float = Field(default=10.0, ge=0)


class R1(Constraint):
    name = "r1"
    description = "R1: (γ/2)·E‖∇D(x_real)‖² on real data only (Mescheder 2018)"
    Settings = R1Settings

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        gamma = self.settings.gamma
        if gamma == 0:
            return None
        return 0.5 * gamma * r1_penalty(critic, real)


def r1_penalty(critic: nn.Module, real: Tensor) -> Tensor:
    """Unweighted ``E ‖∇_x D(x)‖²`` over the real batch (norm over all non-batch dims)."""
    x = real.detach().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x).sum(), x, create_graph=True)
    return grad.flatten(start_dim=1).pow(2).sum(dim=1).mean()


@hookimpl
def register_constraints(register):
    register(R1)
