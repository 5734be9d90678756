"""The Wasserstein GAN loss: critic scores are unbounded, no sigmoid and no log.

Arjovsky, Chintala & Bottou 2017, "Wasserstein GAN" (Algorithm 1;
martinarjovsky/WassersteinGAN ``main.py``). The critic minimises
``mean(D(fake)) - mean(D(real))``, so ``-critic_loss`` estimates the Wasserstein-1
distance (up to the Lipschitz constant the constraint enforces); the generator
minimises ``-mean(D(fake))``. The loss alone does not bound the critic: pair it with a
constraint (weight clipping, gradient penalty or spectral normalization).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Loss

if TYPE_CHECKING:
    from torch import Tensor


class WGAN(Loss):
    name = "wgan"
    description = "Wasserstein loss: D(fake) - D(real), G: -D(fake) (Arjovsky 2017)"
    estimates_wasserstein = True

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return fake_scores.mean() - real_scores.mean()

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        return -fake_scores.mean()


@hookimpl
def register_losses(register: Callable[[type[Loss]], None]) -> None:
    register(WGAN)
