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

from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from pipeline import hookimpl
from pipeline.types import Optimizer, PopulationOptimizer, Settings

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn


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

    @classmethod
    def population_form(
        cls, params: Sequence[Tensor], settings: Sequence[Settings]
    ) -> PopulationOptimizer:
        return PopulationAdam(params, settings)


class PopulationAdam(PopulationOptimizer):
    """K Adams over stacked parameters, each with its own lr, betas, eps, weight decay.

    By hand because ``torch.optim.Adam`` takes one lr/betas per parameter group, a Python
    float or a 0-dim tensor (the tensor forms need ``capturable=True``, CUDA only), while
    here one stacked tensor holds K members. The math and its order are torch's
    single-tensor Adam (``torch/optim/adam.py``, Kingma & Ba 2015, Algorithm 1), each
    member with its own step count; a member masked out of a step keeps its parameters,
    moments and count.
    """

    per_member = ("lr", "betas", "eps", "weight_decay")

    def __init__(self, params: Sequence[Tensor], settings: Sequence[Settings]) -> None:
        import torch

        super().__init__(params, settings)
        self.exp_avg = [torch.zeros_like(p) for p in self.params]
        self.exp_avg_sq = [torch.zeros_like(p) for p in self.params]
        device = self.params[0].device
        self.steps = torch.zeros(len(self.settings), dtype=torch.float64, device=device)
        self._hyper()

    def _hyper(self) -> None:
        import torch

        s = self.settings
        self.lr = self.column((x.lr for x in s), torch.float64)
        self.beta1 = self.column((x.betas[0] for x in s), torch.float64)
        self.beta2 = self.column((x.betas[1] for x in s), torch.float64)
        self.eps = self.column((x.eps for x in s), torch.float64)
        self.weight_decay = self.column((x.weight_decay for x in s), torch.float64)
        self.decays = any(x.weight_decay != 0 for x in s)

    def set_member(self, k: int, settings: Settings) -> None:
        self.settings[k] = settings
        self._hyper()
        for state in (*self.exp_avg, *self.exp_avg_sq):
            state[k].zero_()
        self.steps[k] = 0

    def member_state(self, k: int, index: int) -> dict[str, Tensor]:
        import torch

        if self.steps[k] == 0:
            return {}
        step = self.steps[k].to(torch.float32).cpu()
        return {
            "step": step,
            "exp_avg": self.exp_avg[index][k].clone(),
            "exp_avg_sq": self.exp_avg_sq[index][k].clone(),
        }

    def step(self, mask: Tensor) -> None:
        import torch

        with torch.no_grad():
            self.steps = self.steps + mask.to(self.steps.dtype)
            step_size = self.lr / (1 - self.beta1**self.steps)
            bias2_sqrt = (1 - self.beta2**self.steps).sqrt()
            for p, m, v in zip(self.params, self.exp_avg, self.exp_avg_sq, strict=True):
                shape = (-1,) + (1,) * (p.dim() - 1)

                def col(t: Tensor, p: Tensor = p, shape: tuple[int, ...] = shape) -> Tensor:
                    return t.to(p.dtype).view(shape)

                grad = p.grad
                if self.decays:
                    grad = grad + col(self.weight_decay) * p
                m_new = m.lerp(grad, col(1 - self.beta1))
                v_new = v * col(self.beta2) + grad * grad * col(1 - self.beta2)
                denom = v_new.sqrt() / col(bias2_sqrt) + col(self.eps)
                p_new = p - col(step_size) * (m_new / denom)
                keep = mask.view(shape)
                m.copy_(torch.where(keep, m_new, m))
                v.copy_(torch.where(keep, v_new, v))
                p.copy_(torch.where(keep, p_new, p))


def _fused_ok(params: list[nn.Parameter]) -> bool:
    return bool(params) and all(
        p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params
    )


@hookimpl
def register_optimizers(register: Callable[[type[Optimizer]], None]) -> None:
    register(Adam)
