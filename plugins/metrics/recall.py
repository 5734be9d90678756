"""recall: share of real samples inside the k-NN manifold of generated ones (k = 3).

Kynkäänniemi et al. 2019, "Improved Precision and Recall Metric for Assessing Generative
Models" (arXiv:1904.06991): recall measures coverage — how much of the real data the
generator can produce. The manifold of the generated samples is the union of balls
around each, of radius its distance to its k-th nearest generated neighbour; recall is the
share of real vectors inside it. Computed by :mod:`pipeline_plugins.metrics.knn_manifold`
in the 128 features of the classifier of
:mod:`pipeline_plugins.metrics.feature_classifier`, with as many real training images as
there are samples (a seeded subset; all of them when there are fewer). ``k = 3`` is the
paper's default. In [0, 1]: real held-out data scores close to 1, a generator that
always draws the same image close to 0. Non-finite samples are left out of the generated
manifold. Applies to image datasets with labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from pipeline import hookimpl
from pipeline.types import Dataset, Metric, Settings

if TYPE_CHECKING:
    from torch import Tensor


class RecallSettings(Settings):
    #: neighbourhood size k of the manifold balls (Kynkäänniemi et al. 2019: 3)
    k: int = Field(default=3, ge=1)


class Recall(Metric):
    name = "recall"
    description = "share of real data inside the samples' k-NN manifold, k=3 (Kynkäänniemi 2019)"
    Settings = RecallSettings
    direction = "maximize"

    def applies_to(self, dataset: Dataset) -> bool:
        from pipeline_plugins.metrics.labelled_images import has_labelled_images

        return has_labelled_images(dataset)

    def compute(self, samples: Tensor, dataset: Dataset) -> float:
        import torch

        from pipeline_plugins.metrics.classifier_store import classifier_for
        from pipeline_plugins.metrics.knn_manifold import inside_manifold, knn_radii
        from pipeline_plugins.metrics.labelled_images import checked_samples

        x = checked_samples(samples, dataset, self.name)
        classifier = classifier_for(dataset)
        finite = torch.isfinite(x.flatten(1)).all(dim=1)
        k = self.settings.k
        if int(finite.sum()) <= k:
            return 0.0
        features = classifier.features_and_logits(x)[0][finite]
        real = classifier.reference_subset(x.shape[0])
        radii = knn_radii(features, k)
        return float(inside_manifold(real, features, radii).to(torch.float64).mean())


@hookimpl
def register_metrics(register):
    register(Recall)
