"""Plain stochastic gradient descent, the optimizer of the original GAN.

Goodfellow et al. 2014, "Generative Adversarial Nets", Algorithm 1, trains with
minibatch stochastic gradient steps ("we used momentum in our experiments"). The
defaults here are a baseline rather than a paper setting: lr 1e-3, no momentum, no
Nesterov, no weight decay.
Nesterov momentum (Sutskever et al. 2013) needs ``momentum > 0``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Self

from pydantic import Field, model_validator

from pipeline import hookimpl
from pipeline.types import Optimizer, Settings

if TYPE_CHECKING:
    import torch
    from torch import nn


class SGDSettings(Settings):
    #: step size (a baseline value, not a paper's)
    lr: float = Field(default=1e-3, gt=0)
    #: heavy-ball momentum, 0 for plain SGD
    momentum: float = Field(default=0.0, ge=0)
    #: use Nesterov momentum (requires momentum > 0)
    nesterov: bool = False
    #: L2 penalty added to the gradient
    weight_decay: float = Field(default=0.0, ge=0)

    @model_validator(mode="after")
    def _nesterov_needs_momentum(self) -> Self:
        if self.nesterov and self.momentum <= 0:
            raise ValueError(f"nesterov=True requires momentum > 0, got momentum={self.momentum}")
        return self


class SGD(Optimizer):
    name = "sgd"
    description = "SGD, lr 1e-3, optional (Nesterov) momentum (Goodfellow et al. 2014)"
    Settings = SGDSettings

    def build(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        import torch

        s = self.settings
        return torch.optim.SGD(
            params,
            lr=s.lr,
            momentum=s.momentum,
            nesterov=s.nesterov,
            weight_decay=s.weight_decay,
        )


@hookimpl
def register_optimizers(register: Callable[[type[Optimizer]], None]) -> None:
    register(SGD)
