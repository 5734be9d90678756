"""The feature classifier as torchmetrics' custom ``feature`` module (for ``classifier_fd``).

Apart from :mod:`pipeline_plugins.metrics.classifier_fd` so that loading the plugin
(``pipeline plugins``, checking an experiment file) does not import torch.
"""

from __future__ import annotations

from torch import Tensor, nn

from pipeline_plugins.metrics.feature_classifier import FeatureClassifier
from pipeline_plugins.metrics.feature_net import FeatureNet


class ClassifierFeatures(nn.Module):
    """The classifier's features as torchmetrics' custom ``feature`` module."""

    num_features = FeatureNet.num_features

    def __init__(self, classifier: FeatureClassifier) -> None:
        super().__init__()
        self.classifier = classifier  # a dataclass, not a submodule: nothing is trained

    def forward(self, x: Tensor) -> Tensor:
        if x is self.classifier.reference_images:
            return self.classifier.reference()[0]
        return self.classifier.features_and_logits(x)[0]
