"""Adam, with the DCGAN defaults every GAN paper since has started from.

Radford, Metz & Chintala 2016, "Unsupervised Representation Learning with Deep
Convolutional Generative Adversarial Networks" (DCGAN), §4: learning rate 2e-4 and
β1 = 0.5 (β1 = 0.9 "resulted in training oscillation and instability"), β2 = 0.999;
the same as the GAN row of the reference table. Other systems override these:
WGAN-GP uses lr 1e-4 with betas (0.0, 0.9) in the paper's Algorithm 1 and (0.5, 0.9)
in the authors' code (Gulrajani et al. 2017); SN-GAN uses
betas (0.0, 0.9) or (0.5, 0.999) (Miyato et al. 2018). ``eps`` and ``weight_decay``
are torch's (and Kingma & Ba 2015's) defaults.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from pipeline import hookimpl
from pipeline.types import Optimizer, Settings

if TYPE_CHECKING:
    import torch
    from torch import nn


class AdamSettings(Settings):
    #: step size (Radford et al. 2016: 2e-4)
    lr: float = Field(default=2e-4, gt=0)
    #: (β1, β2), each in [0, 1) (Radford et al. 2016: β1 = 0.5; β2 = 0.999)
    betas: tuple[float, float] = (0.5, 0.999)
    #: added to the denominator for stability (Kingma & Ba 2015)
    eps: float = Field(default=1e-8, ge=0)
    #: L2 penalty added to the gradient (torch's Adam, not AdamW)
    weight_decay: float = Field(default=0.0, ge=0)
    #: torch's fused kernel (one kernel for all parameters), "theoretically fastest" by
    #: torch.optim's documentation, same math; its speed here is in README, "Speed".
    #: None: fused whenever every parameter is a float tensor on CPU or CUDA.
    fused: bool | None = None

    @field_validator("betas")
    @classmethod
    def _betas_in_unit_interval(cls, betas: tuple[float, float]) -> tuple[float, float]:
        for i, beta in enumerate(betas, start=1):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"beta{i} must lie in [0, 1), got {beta} (betas = {betas})")
        return betas


class Adam(Optimizer):
    name = "adam"
    description = "Adam, lr 2e-4, betas (0.5, 0.999) (Radford et al. 2016, DCGAN)"
    Settings = AdamSettings

    def build(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        import torch

        s = self.settings
        params = list(params)
        fused = s.fused if s.fused is not None else _fused_ok(params)
        return torch.optim.Adam(
            params,
            lr=s.lr,
            betas=s.betas,
            eps=s.eps,
            weight_decay=s.weight_decay,
            fused=fused or None,
        )


def _fused_ok(params: list[nn.Parameter]) -> bool:
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )


@hookimpl
def register_optimizers(register: Callable[[type[Optimizer]], None]) -> None:
    register(Adam)
