"""The hinge adversarial loss.

Lim & Ye 2017, "Geometric GAN", and Miyato et al. 2018, "Spectral Normalization for
Generative Adversarial Networks", where it is the loss paired with spectral
normalization. The critic minimises ``mean(relu(1 - D(real))) + mean(relu(1 + D(fake)))``
and the generator minimises ``-mean(D(fake))``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Loss

if TYPE_CHECKING:
    from torch import Tensor


class Hinge(Loss):
    name = "hinge"
    description = "hinge loss: relu(1-D(real)) + relu(1+D(fake)), G: -D(fake) (Lim & Ye 2017)"

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        import torch.nn.functional as F

        return F.relu(1.0 - real_scores).mean() + F.relu(1.0 + fake_scores).mean()

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        return -fake_scores.mean()


@hookimpl
def register_losses(register: Callable[[type[Loss]], None]) -> None:
    register(Hinge)
