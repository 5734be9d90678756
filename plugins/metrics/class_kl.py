"""class_kl: KL(predicted class histogram ‖ uniform) of generated samples.

The KL divergence of the Stacked-MNIST evaluations (Metz et al. 2017, "Unrolled GANs";
Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN, which uses this form): with
``p_i`` the share of generated samples the classifier of
:mod:`pipeline_plugins.metrics.feature_classifier` assigns to class ``i`` of ``K``,

    KL(p ‖ U) = Σ_i p_i log(K p_i)      (0 log 0 = 0; natural log)

0 when the classes are equally frequent (the real data sets used here are close to
balanced), ``log K`` when every sample falls in one class (log 10 ≈ 2.303 for digits).
Non-finite samples belong to no class; if none is finite the value is ``log K``, as if
collapsed. Applies to image datasets with integer labels.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Dataset, Metric, Settings
from pipeline_plugins.metrics.class_coverage import class_counts

if TYPE_CHECKING:
    from torch import Tensor


class ClassKLSettings(Settings):
    pass


def kl_to_uniform(counts: Tensor) -> float:
    """KL(p ‖ uniform) of the histogram ``counts`` over its ``len(counts)`` classes."""
    import torch

    k = counts.numel()
    total = counts.sum()
    if total == 0:
        return math.log(k)
    p = counts.to(torch.float64) / total
    p = p[p > 0]
    return float((p * torch.log(k * p)).sum())


class ClassKL(Metric):
    name = "class_kl"
    description = "KL(predicted class histogram ‖ uniform) of the samples (Stacked-MNIST)"
    Settings = ClassKLSettings
    direction = "minimize"

    def applies_to(self, dataset: Dataset) -> bool:
        from pipeline_plugins.metrics.labelled_images import has_labelled_images

        return has_labelled_images(dataset)

    def compute(self, samples: Tensor, dataset: Dataset) -> float:
        counts, _ = class_counts(samples, dataset, self.name)
        return kl_to_uniform(counts)


@hookimpl
def register_metrics(register):
    register(ClassKL)
