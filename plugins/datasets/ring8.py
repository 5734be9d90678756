"""ring8: eight Gaussians on the unit circle, PacGAN / VEEGAN scale.

VEEGAN (Srivastava et al. 2017, arXiv:1705.07761, §5.1) and PacGAN (Lin et al. 2018,
arXiv:1712.04086, fjxmlzn/PacGAN ``synthetic_data_experiments/*/config.py``): 8 modes at
``(cos 2πi/8, sin 2πi/8)``, i = 0..7 (radius 1), each an isotropic Gaussian with σ = 0.01,
the mode chosen uniformly per sample. The angles are ``2π·arange(8)/8``, not
``linspace(0, 2π, 8)``, which repeats the first centre and gives only 7 modes.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Dataset, Settings

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class Ring8Settings(Settings):
    #: radius of the circle (PacGAN/VEEGAN: 1)
    radius: float = 1.0
    #: standard deviation of each mode (PacGAN/VEEGAN: 0.01)
    std: float = 0.01


class Ring8(Dataset):
    name = "ring8"
    description = "8 Gaussians on the unit circle, σ=0.01 (VEEGAN / PacGAN scale)"
    Settings = Ring8Settings

    def __init__(self, settings: Ring8Settings | None = None) -> None:
        import torch

        super().__init__(settings)
        s = self.settings
        angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
        centers = s.radius * torch.stack([torch.cos(angles), torch.sin(angles)], dim=1)
        self.shape = (2,)
        self.centers = centers.to(torch.float32)
        self.std = float(s.std)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        from pipeline_plugins.datasets.mixture import sample_mixture

        return sample_mixture(self.centers, self.std, n, generator)


@hookimpl
def register_datasets(register):
    register(Ring8)
