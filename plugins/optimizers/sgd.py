"""Plain stochastic gradient descent, the optimizer of the original GAN.

Goodfellow et al. 2014, "Generative Adversarial Nets", Algorithm 1, trains with
minibatch stochastic gradient steps ("we used momentum in our experiments"). The
defaults here are a baseline rather than a paper setting: lr 1e-3, no momentum, no
Nesterov, no weight decay.
Nesterov momentum (Sutskever et al. 2013) needs ``momentum > 0``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Self

from pydantic import Field, model_validator

from pipeline import hookimpl
from pipeline.types import Optimizer, PopulationOptimizer, Settings

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


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

    @classmethod
    def population_form(
        cls, params: Sequence[Tensor], settings: Sequence[Settings]
    ) -> PopulationOptimizer:
        return PopulationSGD(params, settings)


class PopulationSGD(PopulationOptimizer):
    """K SGDs over stacked parameters, each with its own lr, momentum, Nesterov flag and
    weight decay.

    By hand because ``torch.optim.SGD`` takes one lr per parameter group and here one
    stacked tensor holds K members. The math is torch's single-tensor SGD
    (``torch/optim/sgd.py``, no dampening): the first momentum step sets the buffer to
    the gradient; a member masked out of a step keeps its parameters and buffer.
    """

    per_member = ("lr", "momentum", "nesterov", "weight_decay")

    def __init__(self, params: Sequence[Tensor], settings: Sequence[Settings]) -> None:
        import torch

        super().__init__(params, settings)
        self.momentum_buffer = [torch.zeros_like(p) for p in self.params]
        self.steps = torch.zeros(len(self.settings), device=self.params[0].device)
        self._hyper()

    def _hyper(self) -> None:
        s = self.settings
        self.lr = self.column(x.lr for x in s)
        self.momentum = self.column(x.momentum for x in s)
        self.nesterov = self.column(float(x.nesterov) for x in s) > 0
        self.weight_decay = self.column(x.weight_decay for x in s)
        self.decays = any(x.weight_decay != 0 for x in s)
        self.uses_momentum = any(x.momentum > 0 for x in s)

    def set_member(self, k: int, settings: Settings) -> None:
        self.settings[k] = settings
        self._hyper()
        for buf in self.momentum_buffer:
            buf[k].zero_()
        self.steps[k] = 0

    def member_state(self, k: int, index: int) -> dict[str, Tensor]:
        if self.steps[k] == 0 or self.settings[k].momentum == 0:
            return {}
        return {"momentum_buffer": self.momentum_buffer[index][k].clone()}

    def step(self, mask: Tensor) -> None:
        import torch

        with torch.no_grad():
            self.steps = self.steps + mask.to(self.steps.dtype)
            for p, buf in zip(self.params, self.momentum_buffer, strict=True):
                shape = (-1,) + (1,) * (p.dim() - 1)
                grad = p.grad
                if self.decays:
                    grad = grad + self.weight_decay.view(shape) * p
                keep = mask.view(shape)
                if self.uses_momentum:
                    # a zero buffer (the first step) gives momentum·0 + grad = grad
                    buf_new = buf * self.momentum.view(shape) + grad
                    nesterov = grad + self.momentum.view(shape) * buf_new
                    heavy = torch.where(self.nesterov.view(shape), nesterov, buf_new)
                    grad = torch.where((self.momentum > 0).view(shape), heavy, grad)
                    buf.copy_(torch.where(keep, buf_new, buf))
                p_new = p - self.lr.view(shape) * grad
                p.copy_(torch.where(keep, p_new, p))


@hookimpl
def register_optimizers(register: Callable[[type[Optimizer]], None]) -> None:
    register(SGD)
