"""gaussians8: the "8gaussians" toy set of WGAN-GP, at its own scale.

Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", caogang/wgan-gp
``gan_toy.py`` (``DATASET == '8gaussians'``): the centres ``(±1, 0)``, ``(0, ±1)`` and
``(±1/√2, ±1/√2)`` times ``scale = 2``, a mode chosen uniformly per point, noise
``randn(2) * 0.02`` added, then the whole point divided by 1.414 ("stdev"). Dividing the
sum is the same as dividing each part, so this is the mixture with centres
``2c/1.414`` (radius ≈ 1.414) and σ = ``0.02/1.414``. Not the PacGAN ring: use ``ring8``
for the VEEGAN/PacGAN numbers.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Dataset, Settings

if TYPE_CHECKING:
    import torch
    from torch import Tensor

_R = 1.0 / math.sqrt(2.0)
#: gan_toy.py's centre list, in its order, before scaling
UNIT_CENTERS = (
    (1.0, 0.0),
    (-1.0, 0.0),
    (0.0, 1.0),
    (0.0, -1.0),
    (_R, _R),
    (_R, -_R),
    (-_R, _R),
    (-_R, -_R),
)


class Gaussians8Settings(Settings):
    #: centres are multiplied by this (gan_toy.py: scale = 2.)
    scale: float = 2.0
    #: noise added before the division (gan_toy.py: randn(2) * .02)
    noise: float = 0.02
    #: everything is divided by this at the end (gan_toy.py: dataset /= 1.414)
    divisor: float = 1.414


class Gaussians8(Dataset):
    name = "gaussians8"
    description = "WGAN-GP 8gaussians: radius-2 ring, σ=0.02, all /1.414 (gan_toy.py)"
    Settings = Gaussians8Settings

    def __init__(self, settings: Gaussians8Settings | None = None) -> None:
        import torch

        super().__init__(settings)
        s = self.settings
        centers = torch.tensor(UNIT_CENTERS, dtype=torch.float64) * s.scale / s.divisor
        self.shape = (2,)
        self.centers = centers.to(torch.float32)
        self.std = float(s.noise / s.divisor)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        from pipeline_plugins.datasets.mixture import sample_mixture

        return sample_mixture(self.centers, self.std, n, generator)


@hookimpl
def register_datasets(register):
    register(Gaussians8)
