"""classifier_accuracy: held-out accuracy of the classifier behind the image metrics.

Not a measure of the generator: it records how good the judge is. ``classifier_fd``,
``class_coverage``, ``class_kl``, ``precision`` and ``recall`` are computed with the small
CNN of :mod:`pipeline_plugins.metrics.feature_net`, trained on the dataset's real
labelled training images; this metric is its accuracy on the held-out images (the
digits' seeded 20 %, MNIST's t10k set), the same at every evaluation of a run. Listed in
an experiment's ``metrics``, it is logged to MLflow beside the metrics it vouches for.
Applies to image datasets with integer labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Dataset, Metric, Settings

if TYPE_CHECKING:
    from torch import Tensor


class ClassifierAccuracySettings(Settings):
    pass


class ClassifierAccuracy(Metric):
    name = "classifier_accuracy"
    description = "held-out accuracy of the CNN behind the image metrics (constant per dataset)"
    Settings = ClassifierAccuracySettings
    direction = "maximize"

    def applies_to(self, dataset: Dataset) -> bool:
        from pipeline_plugins.metrics.labelled_images import has_labelled_images

        return has_labelled_images(dataset)

    def compute(self, samples: Tensor, dataset: Dataset) -> float:
        from pipeline_plugins.metrics.classifier_store import classifier_for
        from pipeline_plugins.metrics.labelled_images import checked_samples

        checked_samples(samples, dataset, self.name)
        return classifier_for(dataset).heldout_accuracy


@hookimpl
def register_metrics(register):
    register(ClassifierAccuracy)
