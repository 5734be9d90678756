"""class_coverage: how many classes the feature classifier predicts among generated samples.

The mode count of the Stacked-MNIST evaluations (Metz et al. 2017, "Unrolled Generative
Adversarial Networks"; Srivastava et al. 2017, VEEGAN, arXiv:1705.07761; Lin et al. 2018,
PacGAN, arXiv:1712.04086): a classifier trained on the real data labels every generated
sample, and a class (mode) counts as covered when at least one sample is assigned to it.
The classifier is the one of :mod:`pipeline_plugins.metrics.feature_classifier`. A
generator that always draws the same image covers exactly one class; all of the classes of
the data is the best value. Non-finite samples count for no class. Applies to image
datasets with integer labels.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pipeline import hookimpl
from pipeline.types import Dataset, Metric, Settings

if TYPE_CHECKING:
    from torch import Tensor


class ClassCoverageSettings(Settings):
    pass


def class_counts(samples: Tensor, dataset: Dataset, metric: str) -> tuple[Tensor, int]:
    """Generated samples per predicted class ``(classes,)`` (non-finite ones in none), and n."""
    import torch

    from pipeline_plugins.metrics.classifier_store import classifier_for
    from pipeline_plugins.metrics.labelled_images import checked_samples

    x = checked_samples(samples, dataset, metric)
    classifier = classifier_for(dataset)
    finite = torch.isfinite(x.flatten(1)).all(dim=1)
    predicted = classifier.predict(x)[finite]
    return torch.bincount(predicted, minlength=classifier.num_classes), x.shape[0]


class ClassCoverage(Metric):
    name = "class_coverage"
    description = "classes the real-data classifier predicts among the samples (Stacked-MNIST)"
    Settings = ClassCoverageSettings
    direction = "maximize"

    def applies_to(self, dataset: Dataset) -> bool:
        from pipeline_plugins.metrics.labelled_images import has_labelled_images

        return has_labelled_images(dataset)

    def compute(self, samples: Tensor, dataset: Dataset) -> float:
        counts, _ = class_counts(samples, dataset, self.name)
        return float((counts > 0).sum())


@hookimpl
def register_metrics(register):
    register(ClassCoverage)
