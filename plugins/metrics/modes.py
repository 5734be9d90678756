"""modes: number of mixture modes captured (VEEGAN / PacGAN protocol).

VEEGAN (Srivastava et al. 2017, arXiv:1705.07761, §5.1, Table 1) and PacGAN (Lin et al.
2018, arXiv:1712.04086, Table 1): a mode is captured when it is the nearest centre of at
least one high-quality sample (within ``3σ`` of it). The papers draw 2,500 generator
samples; the caller chooses ``n``. Applies only to datasets with ``centers`` and ``std``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Dataset, Metric, Settings
from pipeline_plugins.metrics.modes_assignment import (
    DEFAULT_THRESHOLD_SIGMAS,
    has_modes,
    high_quality_counts,
)

if TYPE_CHECKING:
    from torch import Tensor


class ModesSettings(Settings):
    #: high-quality radius in units of the mode σ (VEEGAN / PacGAN: 3)
    threshold_sigmas: float = DEFAULT_THRESHOLD_SIGMAS


class Modes(Metric):
    name = "modes"
    description = "modes with ≥1 sample within 3σ of their centre (VEEGAN / PacGAN)"
    Settings = ModesSettings
    direction = "maximize"

    def applies_to(self, dataset: Dataset) -> bool:
        return has_modes(dataset)

    def compute(self, samples: Tensor, dataset: Dataset) -> float:
        counts = high_quality_counts(samples, dataset, self.settings.threshold_sigmas)
        return float((counts > 0).sum().item())


@hookimpl
def register_metrics(register):
    register(Modes)
