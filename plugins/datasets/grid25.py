"""grid25: 25 Gaussians on a 5×5 grid, PacGAN / VEEGAN scale.

VEEGAN (Srivastava et al. 2017, arXiv:1705.07761, §5.1) and PacGAN (Lin et al. 2018,
arXiv:1712.04086, fjxmlzn/PacGAN ``synthetic_data_experiments/*/config.py``): 25 modes
at ``{-4, -2, 0, 2, 4}²``, each an isotropic Gaussian with σ = 0.05, the mode chosen
uniformly per sample.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Dataset, Settings

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class Grid25Settings(Settings):
    #: distance between neighbouring modes (PacGAN/VEEGAN grid: 2, centres -4..4)
    spacing: float = 2.0
    #: standard deviation of each mode (PacGAN/VEEGAN: 0.05)
    std: float = 0.05


class Grid25(Dataset):
    name = "grid25"
    description = "25 Gaussians on {-4,-2,0,2,4}², σ=0.05 (VEEGAN / PacGAN scale)"
    Settings = Grid25Settings

    def __init__(self, settings: Grid25Settings | None = None) -> None:
        import torch

        super().__init__(settings)
        s = self.settings
        axis = s.spacing * torch.arange(-2, 3, dtype=torch.float64)
        xs, ys = torch.meshgrid(axis, axis, indexing="ij")
        self.shape = (2,)
        self.centers = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1).to(torch.float32)
        self.std = float(s.std)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        from pipeline_plugins.datasets.mixture import sample_mixture

        return sample_mixture(self.centers, self.std, n, generator)


@hookimpl
def register_datasets(register):
    register(Grid25)
