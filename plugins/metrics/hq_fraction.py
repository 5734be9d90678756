"""hq_fraction: share of high-quality samples (VEEGAN / PacGAN protocol).

VEEGAN (Srivastava et al. 2017, arXiv:1705.07761, §5.1, "% high quality samples") and
PacGAN (Lin et al. 2018, arXiv:1712.04086, Table 1): a sample is high quality when it
lies within ``3σ`` of its nearest mode centre. Returned as a fraction in [0, 1] (the
papers print a percentage). For an isotropic 2-D Gaussian the 3σ disc holds
``1 - exp(-9/2) ≈ 0.9889`` of the mass, so real data scores about 0.989, not 1.
Applies only to datasets with ``centers`` and ``std``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Dataset, Metric, Settings
from pipeline_plugins.metrics.modes_assignment import (
    DEFAULT_THRESHOLD_SIGMAS,
    assign_modes,
    has_modes,
)

if TYPE_CHECKING:
    from torch import Tensor


class HQFractionSettings(Settings):
    #: high-quality radius in units of the mode σ (VEEGAN / PacGAN: 3)
    threshold_sigmas: float = DEFAULT_THRESHOLD_SIGMAS


class HQFraction(Metric):
    name = "hq_fraction"
    description = "fraction of samples within 3σ of their nearest mode (VEEGAN / PacGAN)"
    Settings = HQFractionSettings
    direction = "maximize"

    def applies_to(self, dataset: Dataset) -> bool:
        return has_modes(dataset)

    def compute(self, samples: Tensor, dataset: Dataset) -> float:
        if samples.shape[0] == 0:
            raise ValueError("hq_fraction needs at least one sample")
        _, high_quality = assign_modes(samples, dataset, self.settings.threshold_sigmas)
        return float(high_quality.double().mean().item())


@hookimpl
def register_metrics(register):
    register(HQFraction)
