"""RMSProp, as the original WGAN trains with it.

Arjovsky, Chintala & Bottou 2017, "Wasserstein GAN", Algorithm 1 and §3: RMSProp with
learning rate 5e-5 for both critic and generator, and no momentum (the paper reports
that momentum-based optimizers such as Adam made WGAN training unstable at times).
``alpha = 0.99`` and ``eps = 1e-8`` are torch's defaults (Tieleman & Hinton 2012).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline import hookimpl
from pipeline.types import Optimizer, PopulationOptimizer, Settings

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


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

    @classmethod
    def population_form(
        cls, params: Sequence[Tensor], settings: Sequence[Settings]
    ) -> PopulationOptimizer:
        return PopulationRMSProp(params, settings)


class PopulationRMSProp(PopulationOptimizer):
    """K RMSProps over stacked parameters, each with its own lr, alpha, momentum, eps and
    weight decay.

    By hand because ``torch.optim.RMSprop`` takes one lr per parameter group (a float or
    a 0-dim tensor) and here one stacked tensor holds K members. The math and its order
    are torch's single-tensor RMSprop (``torch/optim/rmsprop.py``, not centered); a member
    masked out of a step keeps its parameters and state.
    """

    per_member = ("lr", "alpha", "momentum", "eps", "weight_decay")

    def __init__(self, params: Sequence[Tensor], settings: Sequence[Settings]) -> None:
        import torch

        super().__init__(params, settings)
        self.square_avg = [torch.zeros_like(p) for p in self.params]
        self.momentum_buffer = [torch.zeros_like(p) for p in self.params]
        self.steps = torch.zeros(len(self.settings), device=self.params[0].device)
        self._hyper()

    def _hyper(self) -> None:
        s = self.settings
        self.lr = self.column(x.lr for x in s)
        self.alpha = self.column(x.alpha for x in s)
        self.momentum = self.column(x.momentum for x in s)
        self.eps = self.column(x.eps for x in s)
        self.weight_decay = self.column(x.weight_decay for x in s)
        self.decays = any(x.weight_decay != 0 for x in s)
        self.uses_momentum = any(x.momentum > 0 for x in s)

    def set_member(self, k: int, settings: Settings) -> None:
        self.settings[k] = settings
        self._hyper()
        for state in (*self.square_avg, *self.momentum_buffer):
            state[k].zero_()
        self.steps[k] = 0

    def member_state(self, k: int, index: int) -> dict[str, Tensor]:
        if self.steps[k] == 0:
            return {}
        state = {"step": self.steps[k].cpu(), "square_avg": self.square_avg[index][k].clone()}
        if self.settings[k].momentum > 0:
            state["momentum_buffer"] = self.momentum_buffer[index][k].clone()
        return state

    def step(self, mask: Tensor) -> None:
        import torch

        with torch.no_grad():
            self.steps = self.steps + mask.to(self.steps.dtype)
            for p, sq, buf in zip(self.params, self.square_avg, self.momentum_buffer, strict=True):
                shape = (-1,) + (1,) * (p.dim() - 1)
                grad = p.grad
                if self.decays:
                    grad = grad + self.weight_decay.view(shape) * p
                sq_new = sq * self.alpha.view(shape) + grad * grad * (1 - self.alpha).view(shape)
                avg = sq_new.sqrt() + self.eps.view(shape)
                keep = mask.view(shape)
                if self.uses_momentum:
                    buf_new = buf * self.momentum.view(shape) + grad / avg
                    with_momentum = (self.momentum > 0).view(shape)
                    update = torch.where(with_momentum, buf_new, grad / avg)
                    buf.copy_(torch.where(keep, buf_new, buf))
                else:
                    update = grad / avg
                p_new = p - self.lr.view(shape) * update
                sq.copy_(torch.where(keep, sq_new, sq))
                p.copy_(torch.where(keep, p_new, p))


@hookimpl
def register_optimizers(register: Callable[[type[Optimizer]], None]) -> None:
    register(RMSProp)
