"""What chunk-independent distances cost precision and recall.

``plugins/metrics/knn_manifold.py`` computes Euclidean distances pair by pair
(``torch.cdist(..., compute_mode="donot_use_mm_for_euclid_dist")``) so that a k-NN radius,
and whether a sample lies in a ball, do not depend on the chunk size or the CPU's matmul
kernel. This times one ``knn_radii`` call (the distances of an ``n × n`` matrix of
128-d float64 features, in chunks of 1,024 rows, plus the k-th value) both ways: the direct
mode against torch's default matmul path. Rounds alternate the two arms (which goes first
alternates too); the result is the median of per-round ratios ``direct / matmul``.

Sizes: 1,000 (the image experiments' ``train.eval_samples``) and 2,500 (the default).

Usage: ``python benchmarks/knn_distances.py [--n 1000 2500] [--rounds 7] [--threads 1]``.
The last line of stdout is one line of JSON, also written to
``benchmarks/results/knn_distances.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from pipeline_plugins.metrics.knn_manifold import CHUNK, COMPUTE_MODE

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "knn_distances.json"
MATMUL = "use_mm_for_euclid_dist_if_necessary"


def radii_seconds(x: torch.Tensor, k: int, mode: str) -> float:
    start = time.perf_counter()
    for i in range(0, x.shape[0], CHUNK):
        torch.cdist(x[i : i + CHUNK], x, compute_mode=mode).kthvalue(k + 1, dim=1)
    return time.perf_counter() - start


def measure(n: int, dim: int, rounds: int) -> dict[str, float]:
    x = torch.randn(n, dim, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    radii_seconds(x, 3, COMPUTE_MODE), radii_seconds(x, 3, MATMUL)  # warm-up
    direct, matmul, ratios = [], [], []
    for r in range(rounds):
        arms = [COMPUTE_MODE, MATMUL] if r % 2 == 0 else [MATMUL, COMPUTE_MODE]
        seconds = {mode: radii_seconds(x, 3, mode) for mode in arms}
        direct.append(seconds[COMPUTE_MODE])
        matmul.append(seconds[MATMUL])
        ratios.append(seconds[COMPUTE_MODE] / seconds[MATMUL])
        print(
            f"n={n} round {r + 1}: direct {direct[-1]:.3f} s, matmul {matmul[-1]:.3f} s, "
            f"ratio {ratios[-1]:.2f}"
        )
    return {
        "n": n,
        "dim": dim,
        "rounds": rounds,
        "direct_s": round(statistics.median(direct), 4),
        "matmul_s": round(statistics.median(matmul), 4),
        "extra_s": round(statistics.median(d - m for d, m in zip(direct, matmul, strict=True)), 4),
        "ratio": round(statistics.median(ratios), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=int, nargs="+", default=[1000, 2500], help="feature vectors (samples)"
    )
    parser.add_argument("--dim", type=int, default=128, help="feature dimension")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [measure(n, args.dim, args.rounds) for n in args.n]
    result = {"benchmark": "knn_distances", "threads": args.threads, "sizes": sizes}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
