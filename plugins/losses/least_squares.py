"""The least-squares GAN loss (LSGAN).

Mao et al. 2017, "Least Squares Generative Adversarial Networks", eq. 2:

- critic: ``0.5 * mean((D(real) - b)^2) + 0.5 * mean((D(fake) - a)^2)``
- generator: ``0.5 * mean((D(fake) - c)^2)``

The defaults are the paper's 0-1 binary coding scheme (§3.2.2):
``a = 0`` (fake label), ``b = 1`` (real label), ``c = 1`` (the value the generator wants
the critic to believe). The paper's other suggestion, ``a = -1, b = 1, c = 0``
(``b - c = 1, b - a = 2``, minimising the Pearson χ² divergence), is one settings
change away. The critic outputs raw scores, no sigmoid.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Loss, Settings

if TYPE_CHECKING:
    from torch import Tensor


class LeastSquaresSettings(Settings):
    #: target of the critic for fake samples (Mao et al. 2017, eq. 2; 0-1 coding)
    a: float = 0.0
    #: target of the critic for real samples
    b: float = 1.0
    #: target the generator pushes D(fake) towards
    c: float = 1.0


class LeastSquares(Loss):
    name = "least_squares"
    description = "LSGAN: squared error to targets a (fake), b (real), c (G) (Mao 2017)"
    Settings = LeastSquaresSettings

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        s = self.settings
        return 0.5 * (real_scores - s.b).pow(2).mean() + 0.5 * (fake_scores - s.a).pow(2).mean()

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        return 0.5 * (fake_scores - self.settings.c).pow(2).mean()


@hookimpl
def register_losses(register: Callable[[type[Loss]], None]) -> None:
    register(LeastSquares)
