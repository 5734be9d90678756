"""RMSProp, as the original WGAN trains with it.

Arjovsky, Chintala & Bottou 2017, "Wasserstein GAN", Algorithm 1 and §3: RMSProp with
learning rate 5e-5 for both critic and generator, and no momentum (the paper reports
that momentum-based optimizers such as Adam made WGAN training unstable at times).
``alpha = 0.99`` and ``eps = 1e-8`` are torch's defaults (Tieleman & Hinton 2012).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline import hookimpl
from pipeline.types import Optimizer, Settings

if TYPE_CHECKING:
    import torch
    from torch import nn


class RMSPropSettings(Settings):
    #: step size (Arjovsky et al. 2017, Algorithm 1: 5e-5)
    lr: float = Field(default=5e-5, gt=0)
    #: decay of the running mean of squared gradients (torch default)
    alpha: float = Field(default=0.99, ge=0, lt=1)
    #: momentum; the WGAN paper advises against it (Arjovsky et al. 2017, §3)
    momentum: float = Field(default=0.0, ge=0)
    #: added to the denominator for stability (torch default)
    eps: float = Field(default=1e-8, ge=0)
    #: L2 penalty added to the gradient
    weight_decay: float = Field(default=0.0, ge=0)


class RMSProp(Optimizer):
    name = "rmsprop"
    description = "RMSProp, lr 5e-5, no momentum (Arjovsky et al. 2017, WGAN)"
    Settings = RMSPropSettings

    def build(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        import torch

        s = self.settings
        return torch.optim.RMSprop(
            params,
            lr=s.lr,
            alpha=s.alpha,
            eps=s.eps,
            momentum=s.momentum,
            weight_decay=s.weight_decay,
        )


@hookimpl
def register_optimizers(register: Callable[[type[Optimizer]], None]) -> None:
    register(RMSProp)
