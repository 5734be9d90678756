"""reverse_kl: KL(p_gen ‖ uniform) over the mixture modes (PacGAN protocol).

PacGAN (Lin et al. 2018, arXiv:1712.04086, Table 1, "reverse KL"): ``p_gen`` is the
share of the high-quality samples (within ``3σ`` of their nearest centre) assigned to
each of the K modes, the target is the uniform distribution over the modes, and

    KL(p_gen ‖ uniform) = Σ_{k: p_k > 0} p_k · log(p_k · K)    (natural log)

which is 0 for perfectly balanced modes and ``log K`` when every high-quality sample
falls in one mode. PacGAN states this form for Stacked MNIST; for the 2-D sets the
paper's exact formula was not checked, so this is the one used here.

Choice for the degenerate case: when no sample at all is high quality p_gen is
undefined; we return ``log K``, the value of a generator collapsed onto a single mode,
i.e. the worst value a non-empty p_gen can take (low-quality samples must not look
better than a collapse). Applies only to datasets with ``centers`` and ``std``.
"""

from __future__ import annotations

import math
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


class ReverseKLSettings(Settings):
    #: high-quality radius in units of the mode σ (VEEGAN / PacGAN: 3)
    threshold_sigmas: float = DEFAULT_THRESHOLD_SIGMAS


class ReverseKL(Metric):
    name = "reverse_kl"
    description = "KL(p_gen ‖ uniform) over modes of high-quality samples (PacGAN)"
    Settings = ReverseKLSettings
    direction = "minimize"

    def applies_to(self, dataset: Dataset) -> bool:
        return has_modes(dataset)

    def compute(self, samples: Tensor, dataset: Dataset) -> float:
        import torch

        counts = high_quality_counts(samples, dataset, self.settings.threshold_sigmas)
        k = counts.shape[0]
        total = int(counts.sum().item())
        if total == 0:
            return math.log(k)
        p = counts[counts > 0].to(torch.float64) / total
        kl = float((p * torch.log(p * k)).sum().item())
        return max(kl, 0.0)  # KL ≥ 0; clears a -1e-17 rounding residue


@hookimpl
def register_metrics(register):
    register(ReverseKL)
