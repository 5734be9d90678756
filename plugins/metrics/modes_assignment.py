"""Shared mode assignment for the VEEGAN / PacGAN mode metrics (no plugin here, no hookimpl).

Protocol (VEEGAN, Srivastava et al. 2017, arXiv:1705.07761, §5.1; PacGAN, Lin et al.
2018, arXiv:1712.04086, §5): each generated sample is assigned to its nearest mode
centre; it is **high quality** when that distance is below ``3σ`` (σ = ``dataset.std``).
:func:`assign_modes` returns both, :func:`high_quality_counts` the number of
high-quality samples per mode, from which the three metrics are read off:

- ``modes``: centres that are the nearest centre of at least one high-quality sample;
- ``hq_fraction``: share of all samples that are high quality;
- ``reverse_kl``: KL(p_gen ‖ uniform over the K modes), p_gen the share of the
  high-quality samples assigned to each mode.

Distances are computed in float64 from the plain differences (no matmul trick), so a
sample sitting on a centre is at distance 0 up to float32 rounding of the input.
Non-finite samples (NaN, inf) are never high quality.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline.types import Dataset

if TYPE_CHECKING:
    from torch import Tensor

#: VEEGAN / PacGAN: a sample is high quality within 3 standard deviations of a centre
DEFAULT_THRESHOLD_SIGMAS = 3.0


def has_modes(dataset: Dataset) -> bool:
    """Whether the dataset is a mixture with mode ``centers`` and a per-mode ``std``."""
    return dataset.centers is not None and dataset.std is not None


def assign_modes(
    samples: Tensor, dataset: Dataset, threshold_sigmas: float = DEFAULT_THRESHOLD_SIGMAS
) -> tuple[Tensor, Tensor]:
    """Nearest-centre index ``(n,)`` (int64) and high-quality mask ``(n,)`` (bool)."""
    import torch

    if not has_modes(dataset):
        raise ValueError(
            f"dataset {getattr(dataset, 'name', type(dataset).__name__)!r} has no mode "
            "centers/std: the mode metrics apply only to mixtures"
        )
    centers = dataset.centers.detach().to("cpu", torch.float64)
    x = samples.detach().to("cpu", torch.float64).reshape(samples.shape[0], -1)
    if x.shape[1] != centers.shape[1]:
        raise ValueError(
            f"samples have {x.shape[1]} coordinates, the mode centres {centers.shape[1]}"
        )
    sq_dist = ((x[:, None, :] - centers[None, :, :]) ** 2).sum(dim=-1)  # (n, K)
    nearest_sq, nearest = sq_dist.min(dim=1)
    threshold = threshold_sigmas * float(dataset.std)
    high_quality = nearest_sq < threshold**2  # NaN compares False
    return nearest, high_quality


def high_quality_counts(
    samples: Tensor, dataset: Dataset, threshold_sigmas: float = DEFAULT_THRESHOLD_SIGMAS
) -> Tensor:
    """Number of high-quality samples whose nearest centre is each mode: ``(K,)`` int64."""
    import torch

    nearest, high_quality = assign_modes(samples, dataset, threshold_sigmas)
    k = dataset.centers.shape[0]
    return torch.bincount(nearest[high_quality], minlength=k)
