"""Shared sampling helpers for the dataset plugins (no plugin here, no hookimpl).

Both helpers draw every random number from the ``generator`` they are given, so a
seeded generator reproduces the batch and the global torch RNG is left untouched.
"""

from __future__ import annotations

import torch
from torch import Tensor


def sample_mixture(centers: Tensor, std: float, n: int, generator: torch.Generator) -> Tensor:
    """``n`` points of the equal-weight isotropic Gaussian mixture ``centers`` (K, d), σ ``std``.

    The mode of each point is drawn uniformly, then ``N(0, std²)`` noise is added.
    """
    k, d = centers.shape
    modes = torch.randint(k, (n,), generator=generator)
    noise = torch.randn(n, d, generator=generator, dtype=torch.float32)
    return centers[modes] + std * noise


def sample_rows(pool: Tensor, n: int, generator: torch.Generator) -> Tensor:
    """``n`` rows of the fixed ``pool`` drawn uniformly with replacement."""
    rows = torch.randint(pool.shape[0], (n,), generator=generator)
    return pool[rows]
