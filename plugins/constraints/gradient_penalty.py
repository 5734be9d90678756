"""The gradient penalty of WGAN-GP.

Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", Algorithm 1
(caogang/wgan-gp): for ``x̂ = α·real + (1-α)·fake`` with ``α ~ U[0, 1]`` drawn per
sample, add ``λ · E[(‖∇_x̂ D(x̂)‖₂ - 1)²]`` to the critic loss (the two-sided
penalty). The gradient is taken with ``create_graph=True`` so the penalty itself can be
back-propagated into the critic (a second backward pass, which is why GP costs more
than spectral normalization).

Default ``λ = 10`` is the paper's value (Algorithm 1, used for its image
experiments); the authors' toy script ``gan_toy.py`` (8gaussians, 25gaussians,
swissroll) uses ``λ = 0.1`` instead, so set ``weight: 0.1`` for the WGAN-GP toy-scale
datasets. The norm is taken over all
non-batch dimensions, so the same code serves 2-D points ``(n, 2)`` and images
``(n, c, h, w)``. A packed critic (PacGAN, Lin et al. 2018: ``pack`` m, see the ``mlp``
model) is a function of m samples at once: α is still drawn per sample, and the norm is
taken over each packed input (its m samples' gradients together), the input the critic
must be 1-Lipschitz in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline import hookimpl
from pipeline.types import Constraint, PopulationConstraint, Settings, StackedNet

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


class GradientPenaltySettings(Settings):
    #: penalty weight λ (Gulrajani et al. 2017: 10 for images; gan_toy.py: 0.1)
    weight: float = Field(default=10.0, ge=0)


class GradientPenalty(Constraint):
    name = "gradient_penalty"
    description = "two-sided penalty λ·E[(‖∇D(x̂)‖-1)²] on interpolates (Gulrajani 2017)"
    Settings = GradientPenaltySettings

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        weight = self.settings.weight
        if weight == 0:
            return None
        return weight * gradient_penalty(critic, real, fake, self.rng)

    @classmethod
    def population_form(cls, settings: Sequence[Settings]) -> PopulationConstraint:
        return PopulationGradientPenalty(settings)


class PopulationGradientPenalty(PopulationConstraint):
    """The gradient penalty of K stacked critics, each member with its own λ.

    Batched autograd: the members' critics are independent, so the gradient of the sum of
    all scores with respect to the ``(K, n, …)`` interpolates is, member for member, each
    member's own gradient (no ``torch.func.grad`` per member needed). A member with
    λ = 0 draws no α and its critic takes no extra forward pass there (spectral norm's
    power iteration), as its single form returns None without either.
    """

    per_member = ("weight",)

    def penalty(
        self, critic: StackedNet, real: Tensor, fake: Tensor, rngs: Sequence[torch.Generator]
    ) -> Tensor | None:
        import torch

        weights = [s.weight for s in self.settings]
        before = critic.taking
        draws = [take and w > 0 for take, w in zip(before, weights, strict=True)]
        if not any(draws):
            return None
        alpha_shape = (real.shape[1],) + (1,) * (real.dim() - 2)
        alpha = torch.zeros((real.shape[0], *alpha_shape), device=real.device, dtype=real.dtype)
        for k, draw in enumerate(draws):
            if draw:
                alpha[k] = torch.rand(
                    alpha_shape, device=real.device, dtype=real.dtype, generator=rngs[k]
                )
        x_hat = (alpha * real.detach() + (1 - alpha) * fake.detach()).requires_grad_(True)
        critic.set_mask(draws)
        try:
            scores = critic(x_hat)
        finally:
            critic.set_mask(before)
        (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
        grad_norm = grad.flatten(start_dim=2).norm(2, dim=2)
        weight = torch.tensor(weights, device=real.device, dtype=real.dtype)
        return weight * (grad_norm - 1).pow(2).mean(dim=1)


def interpolate(real: Tensor, fake: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Random points on the segments between paired real and fake samples.

    ``α ~ U[0, 1]`` has shape ``(n, 1, ..., 1)``: one α per sample, drawn on the inputs'
    device from ``generator`` (the training's, so a seed reproduces it; None: the global
    RNG). The result is a fresh leaf that requires grad; no gradient flows back to the
    generator.
    """
    import torch

    if real.shape != fake.shape:
        raise ValueError(
            f"real and fake batches must have the same shape, got "
            f"{tuple(real.shape)} and {tuple(fake.shape)}"
        )
    alpha_shape = (real.shape[0],) + (1,) * (real.dim() - 1)
    alpha = torch.rand(alpha_shape, device=real.device, dtype=real.dtype, generator=generator)
    x_hat = alpha * real.detach() + (1 - alpha) * fake.detach()
    return x_hat.requires_grad_(True)


def gradient_penalty(
    critic: nn.Module, real: Tensor, fake: Tensor, generator: torch.Generator | None = None
) -> Tensor:
    """Unweighted two-sided penalty ``mean((‖∇_x̂ D(x̂)‖₂ - 1)²)`` on interpolates."""
    import torch

    x_hat = interpolate(real, fake, generator)
    scores = critic(x_hat)
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    # one norm per score: per sample, or per packed input of a PacGAN critic
    grad_norm = grad.reshape(scores.shape[0], -1).norm(2, dim=1)
    return (grad_norm - 1).pow(2).mean()


@hookimpl
def register_constraints(register: Callable[[type[Constraint]], None]) -> None:
    register(GradientPenalty)
