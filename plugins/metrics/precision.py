"""precision: share of generated samples inside the k-NN manifold of real ones (k = 3).

Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative
Models" (arXiv:1904.06991): precision measures sample quality — how much of what the
generator draws looks like real data. Computed by
:mod:`pipeline_plugins.metrics.knn_manifold` in the 128 features of the classifier of
:mod:`pipeline_plugins.metrics.feature_classifier` (the paper uses VGG-16 features, not
available here), against as many real training images as there are samples (a seeded
subset; all of them when there are fewer), as the paper compares equal-size sets.
``k = 3`` is the paper's default. In [0, 1]; real held-out data scores close to 1,
and a collapsed generator drawing one realistic image scores 1 too — read it with
``recall``. Non-finite samples count as outside. Applies to image datasets with labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from pipeline import hookimpl
from pipeline.types import Dataset, Metric, Settings

if TYPE_CHECKING:
    from torch import Tensor


class PrecisionSettings(Settings):
    #: neighbourhood size k of the manifold balls (Kynkäänniemi et al. 2019: 3)
    k: int = Field(default=3, ge=1)


class Precision(Metric):
    name = "precision"
    description = "share of samples inside the real k-NN manifold, k=3 (Kynkäänniemi 2019)"
    Settings = PrecisionSettings
    direction = "maximize"

    def applies_to(self, dataset: Dataset) -> bool:
        from pipeline_plugins.metrics.labelled_images import has_labelled_images

        return has_labelled_images(dataset)

    def compute(self, samples: Tensor, dataset: Dataset) -> float:
        import torch

        from pipeline_plugins.metrics.classifier_store import classifier_for
        from pipeline_plugins.metrics.knn_manifold import inside_manifold
        from pipeline_plugins.metrics.labelled_images import checked_samples

        x = checked_samples(samples, dataset, self.name)
        classifier = classifier_for(dataset)
        finite = torch.isfinite(x.flatten(1)).all(dim=1)
        if not finite.any():
            return 0.0
        n, k = x.shape[0], self.settings.k
        real = classifier.reference_subset(n)
        radii = classifier.reference_radii(n, k)
        features = classifier.features_and_logits(x)[0][finite]
        return float(inside_manifold(features, real, radii).sum()) / n


@hookimpl
def register_metrics(register):
    register(Precision)
