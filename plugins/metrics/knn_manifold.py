"""The k-nearest-neighbour manifold estimate behind ``precision`` and ``recall`` (no plugin here).

Kynkäänniemi, Karras, Laine, Lehtinen & Aila 2019, "Improved Precision and Recall Metric
for Assessing Generative Models" (NeurIPS; arXiv:1904.06991) and the authors' code
(kynkaat/improved-precision-and-recall-metric): the manifold of a set of feature vectors
is the union of balls, one per vector, whose radius is the distance to its k-th nearest
neighbour in the same set (k = 3, the paper's choice). A vector is
inside the manifold when it lies in at least one ball (distance ≤ radius).

- precision = share of generated vectors inside the manifold of the real ones;
- recall = share of real vectors inside the manifold of the generated ones.

The paper compares equally large sets (50,000 each); the metrics here use as many real
vectors as there are generated samples. Written here (30 lines with ``torch.cdist``):
torchmetrics, the library this project uses for the Fréchet distance, has no such
metric, and torch-fidelity's, which has one, is not a dependency of this project.
Distances are Euclidean, computed in float64 and in chunks of rows so the memory stays
at ``chunk × n`` distances.

Distances are computed directly, pair by pair (``torch.cdist`` with
``compute_mode="donot_use_mm_for_euclid_dist"``), not through torch's default
``‖a‖² − 2a·b + ‖b‖²`` matrix-multiply path: that path is taken for large blocks only, so
the last bits of a distance depended on the chunk size and the CPU's matmul kernel, and a
sample on the edge of a ball (a tie, common with repeated or quantised images) could move in
or out with them. Direct distances are the same whatever the chunking, so precision and
recall do not depend on it. What that costs (a few times the matmul path's time, well under
a second per evaluation) is measured by ``benchmarks/knn_distances.py``; the README shows it.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: rows of the distance matrix computed at once
CHUNK = 1024
#: pairwise differences, not the matmul expansion: the result does not depend on the chunking
COMPUTE_MODE = "donot_use_mm_for_euclid_dist"


def distances(a: Tensor, b: Tensor) -> Tensor:
    """Euclidean distances between the rows of ``a`` and of ``b``, computed pair by pair."""
    return torch.cdist(a, b, compute_mode=COMPUTE_MODE)


def knn_radii(points: Tensor, k: int, chunk: int = CHUNK) -> Tensor:
    """Distance from each row of ``points`` ``(n, d)`` to its k-th nearest other row."""
    n = points.shape[0]
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, {n - 1}] for {n} points, got {k}")
    x = points.to(torch.float64)
    radii = [
        distances(x[i : i + chunk], x).kthvalue(k + 1, dim=1).values  # +1: the point itself
        for i in range(0, n, chunk)
    ]
    return torch.cat(radii)


def inside_manifold(queries: Tensor, points: Tensor, radii: Tensor, chunk: int = CHUNK) -> Tensor:
    """For each row of ``queries``: is it within ``radii[j]`` of some ``points[j]``?"""
    q, p = queries.to(torch.float64), points.to(torch.float64)
    inside = [
        (distances(q[i : i + chunk], p) <= radii.unsqueeze(0)).any(dim=1)
        for i in range(0, q.shape[0], chunk)
    ]
    return torch.cat(inside)


def manifold_share(queries: Tensor, points: Tensor, k: int, radii: Tensor | None = None) -> float:
    """Share of ``queries`` inside the k-NN manifold of ``points``."""
    if radii is None:
        radii = knn_radii(points, k)
    return float(inside_manifold(queries, points, radii).to(torch.float64).mean())
