"""A trained feature classifier and the features the image metrics read from it (no plugin).

:class:`FeatureClassifier` holds the network (:mod:`pipeline_plugins.metrics.feature_net`),
its record (held-out accuracy, training time, cache file) and the real reference images
(its training images). It computes each thing once: the features of the real reference,
the k-NN radii of a reference subset per size and k, and — remembered for the last samples
given — the features and logits of generated samples, so the metrics of one evaluation
run the network once. :func:`pipeline_plugins.metrics.classifier_store.classifier_for`
returns the one of a dataset.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from pipeline_plugins.metrics.feature_net import FeatureNet, batches
from pipeline_plugins.metrics.knn_manifold import knn_radii

#: seed of the permutation that picks the real reference subset of precision and recall
REFERENCE_SEED = 0


@dataclass
class FeatureClassifier:
    """A trained classifier, its record, and the real reference features (computed once)."""

    key: str
    net: FeatureNet
    num_classes: int
    heldout_accuracy: float
    train_seconds: float
    n_train: int
    n_heldout: int
    path: Path
    loaded_from_cache: bool
    reference_images: Tensor
    _reference: tuple[Tensor, Tensor] | None = field(default=None, repr=False)
    _memo: tuple[tuple, Tensor, Tensor, Tensor] | None = field(default=None, repr=False)
    _radii: dict[tuple[int, int], Tensor] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @torch.no_grad()
    def _compute(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feats = []
        for b in batches(x.detach().to("cpu", torch.float32)):
            feats.append(self.net.features(b))
        features = torch.cat(feats)
        return features, self.net.head(features)

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Features ``(n, 128)`` and logits ``(n, classes)`` of images ``x``.

        The last result is remembered (by storage, shape, strides and version of ``x``),
        so the metrics of one evaluation run the network once.
        """
        tag = (x.data_ptr(), tuple(x.shape), x.stride(), x._version, x.dtype, x.device)
        with self._lock:
            memo = self._memo
        if memo is not None and memo[0] == tag:
            return memo[2], memo[3]
        features, logits = self._compute(x)
        with self._lock:
            self._memo = (tag, x, features, logits)
        return features, logits

    def reference(self) -> tuple[Tensor, Tensor]:
        """Features and logits of every real reference (training) image."""
        with self._lock:
            ref = self._reference
        if ref is None:
            ref = self._compute(self.reference_images)
            with self._lock:
                self._reference = ref
        return ref

    def predict(self, x: Tensor) -> Tensor:
        """Predicted class of each image of ``x``."""
        return self.features_and_logits(x)[1].argmax(1)

    def reference_subset(self, n: int) -> Tensor:
        """Features of ``min(n, n_train)`` real training images, a seeded random subset."""
        features = self.reference()[0]
        order = torch.randperm(
            features.shape[0], generator=torch.Generator().manual_seed(REFERENCE_SEED)
        )
        return features[order[:n]]

    def reference_radii(self, n: int, k: int) -> Tensor:
        """k-NN radii within :meth:`reference_subset` ``(n)`` (computed once per n and k)."""
        with self._lock:
            radii = self._radii.get((n, k))
        if radii is None:
            radii = knn_radii(self.reference_subset(n), k)
            with self._lock:
                self._radii[(n, k)] = radii
        return radii
