"""swissroll: the 2-D swiss roll of WGAN-GP's toy script.

Gulrajani et al. 2017, "Improved Training of Wasserstein GANs", caogang/wgan-gp
``gan_toy.py`` (``DATASET == 'swissroll'``):
``sklearn.datasets.make_swiss_roll(noise=0.25)``, columns 0 and 2, divided by 7.5
("stdev plus a little"). gan_toy.py draws a fresh roll per batch; here a fixed pool of
100,000 points is made once with ``random_state=settings.seed`` and ``sample`` draws
rows of it uniformly with replacement, so the torch generator alone decides the batch.
A continuous manifold, not a mixture: ``centers`` and ``std`` are None, so the mode
metrics do not apply to it (W1 does).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Dataset, Settings

if TYPE_CHECKING:
    import torch
    from torch import Tensor


class SwissRollSettings(Settings):
    #: random_state of make_swiss_roll for the fixed pool
    seed: int = 0
    #: size of the fixed pool
    points: int = 100_000
    #: make_swiss_roll noise (gan_toy.py: 0.25)
    noise: float = 0.25
    #: the points are divided by this (gan_toy.py: data /= 7.5)
    divisor: float = 7.5


class SwissRoll(Dataset):
    name = "swissroll"
    description = "WGAN-GP swiss roll: make_swiss_roll(noise=0.25)[:, [0, 2]] / 7.5"
    Settings = SwissRollSettings

    def __init__(self, settings: SwissRollSettings | None = None) -> None:
        import torch
        from sklearn.datasets import make_swiss_roll

        super().__init__(settings)
        s = self.settings
        points, _ = make_swiss_roll(n_samples=s.points, noise=s.noise, random_state=s.seed)
        self.pool = torch.from_numpy(points[:, [0, 2]] / s.divisor).to(torch.float32)
        self.shape = (2,)
        self.centers = None
        self.std = None

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        from pipeline_plugins.datasets.mixture import sample_rows

        return sample_rows(self.pool, n, generator)


@hookimpl
def register_datasets(register):
    register(SwissRoll)
