"""gaussians25: the "25gaussians" toy set of WGAN-GP, at its own scale.

Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", caogang/wgan-gp
``gan_toy.py`` (``DATASET == '25gaussians'``): a FIXED set of 100,000 points, 4,000 for
each centre ``2·(x, y)``, x, y ∈ {-2..2}, plus ``randn(2) * 0.05``, the whole set divided
by 2.828 ("stdev"); training batches are read from that set. Here the set is generated
once, with ``torch.Generator().manual_seed(settings.seed)``, and ``sample`` draws rows of
it uniformly with replacement. Centres are ``2·(x, y)/2.828`` and σ = ``0.05/2.828``.
Not the PacGAN grid: use ``grid25`` for the VEEGAN/PacGAN numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Dataset, Settings

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class Gaussians25Settings(Settings):
    #: seed of the generator that builds the fixed set of points
    seed: int = 0
    #: size of the fixed set (gan_toy.py: 100000, i.e. 4000 per mode)
    points: int = 100_000
    #: noise of each point before the division (gan_toy.py: randn(2) * 0.05)
    noise: float = 0.05
    #: the whole set is divided by this (gan_toy.py: dataset /= 2.828)
    divisor: float = 2.828


class Gaussians25(Dataset):
    name = "gaussians25"
    description = "WGAN-GP 25gaussians: fixed 100k points on 2·{-2..2}², σ=0.05, /2.828"
    Settings = Gaussians25Settings

    def __init__(self, settings: Gaussians25Settings | None = None) -> None:
        import torch

        super().__init__(settings)
        s = self.settings
        axis = 2.0 * torch.arange(-2, 3, dtype=torch.float64)
        xs, ys = torch.meshgrid(axis, axis, indexing="ij")
        raw_centers = torch.stack([xs.reshape(-1), ys.reshape(-1)], dim=1)  # (25, 2)
        k = raw_centers.shape[0]
        g = torch.Generator().manual_seed(s.seed)
        # as many points for each centre (gan_toy.py loops 4000 times over the 25 centres)
        modes = torch.arange(s.points) % k
        noise = torch.randn(s.points, 2, generator=g, dtype=torch.float64) * s.noise
        self.pool = ((raw_centers[modes] + noise) / s.divisor).to(torch.float32)
        self.shape = (2,)
        self.centers = (raw_centers / s.divisor).to(torch.float32)
        self.std = float(s.noise / s.divisor)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        from pipeline_plugins.datasets.mixture import sample_rows

        return sample_rows(self.pool, n, generator)


@hookimpl
def register_datasets(register):
    register(Gaussians25)
