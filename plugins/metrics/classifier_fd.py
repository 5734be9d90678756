"""classifier_fd: Fréchet distance in the features of a classifier trained on the real data.

The Fréchet distance between two Gaussians fitted to feature vectors (Dowson & Landau
1982; the form FID uses, Heusel et al. 2017, "GANs Trained by a Two Time-Scale Update
Rule Converge to a Local Nash Equilibrium"):

    d² = ‖μ_r - μ_g‖² + Tr(Σ_r + Σ_g - 2 (Σ_r Σ_g)^{1/2})

computed by torchmetrics' ``FrechetInceptionDistance`` (Lightning-AI/torchmetrics,
``torchmetrics.image.fid``; means and covariances accumulated in float64, the trace of the
square root from the eigenvalues of Σ_r Σ_g) with a **custom feature extractor**: the 128
penultimate features of the small CNN of :mod:`pipeline_plugins.metrics.feature_net`
trained on the dataset's own labelled training images — not Inception v3, whose weights
are not available here. Hence the name: this is **not FID**, its values are not
comparable with published FIDs, only between runs on the same dataset with the same
classifier (whose cache key is in the classifier's file name).

The real statistics are those of all of the classifier's training images (1,438 for
digits, 60,000 for MNIST), computed once per metric instance; the generated ones are
those of the samples given. The estimate is biased upwards by the finite sample size, so
two samples of the same distribution give a small positive value. Non-finite samples (a
diverged generator) give ``inf``. Applies to image datasets with integer labels.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Dataset, Metric, Settings

if TYPE_CHECKING:
    from torch import Tensor, nn

    from pipeline_plugins.metrics.feature_classifier import FeatureClassifier


class ClassifierFDSettings(Settings):
    pass


class ClassifierFD(Metric):
    name = "classifier_fd"
    description = "Fréchet distance in a CNN classifier's features (real vs generated; not FID)"
    Settings = ClassifierFDSettings
    direction = "minimize"

    def __init__(self, settings: ClassifierFDSettings | None = None) -> None:
        super().__init__(settings)
        # classifier key -> torchmetrics metric holding the real statistics
        self._metrics: dict[str, nn.Module] = {}

    def applies_to(self, dataset: Dataset) -> bool:
        from pipeline_plugins.metrics.labelled_images import has_labelled_images

        return has_labelled_images(dataset)

    def _metric(self, classifier: FeatureClassifier):
        metric = self._metrics.get(classifier.key)
        if metric is None:
            from torchmetrics.image.fid import FrechetInceptionDistance  # 1.5 s to import

            from pipeline_plugins.metrics.fd_features import ClassifierFeatures

            metric = FrechetInceptionDistance(
                feature=ClassifierFeatures(classifier), reset_real_features=False
            )
            metric.update(classifier.reference_images, real=True)
            self._metrics[classifier.key] = metric
        return metric

    def compute(self, samples: Tensor, dataset: Dataset) -> float:
        import torch

        from pipeline_plugins.metrics.classifier_store import classifier_for
        from pipeline_plugins.metrics.labelled_images import checked_samples

        x = checked_samples(samples, dataset, self.name)
        if not torch.isfinite(x).all():
            return math.inf
        metric = self._metric(classifier_for(dataset))
        metric.reset()  # keeps the real statistics
        metric.update(x, real=False)
        return float(metric.compute())


@hookimpl
def register_metrics(register):
    register(ClassifierFD)
