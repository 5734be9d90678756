"""The small CNN whose features the image metrics are computed in (no plugin here).

Two 3×3 conv + ReLU layers of 32 and 64 channels, 2×2 max-pooling after the first while
the side is above 8 and after the second, then while the side is still above 8
(8 → 8 → 4; 28 → 14 → 7; 32 → 16 → 8), flatten, ``Linear(64·side², 128)`` + ReLU — the
128 **features** — and ``Linear(128, classes)``. A LeNet-sized net (LeCun et al. 1998) is
enough for these data sets and trains in seconds on one CPU core (README, "Images").

Why a classifier of our own: the Inception network behind FID (Heusel et al. 2017) cannot
be fetched here, and it is a poor judge of 8×8 or 28×28 greyscale digits anyway. The
Stacked-MNIST evaluations (Metz et al. 2017, "Unrolled Generative Adversarial Networks";
Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN) instead train a classifier on the
real training data and count the classes it predicts on generated samples; the Fréchet
distance and the precision/recall estimate are then taken in the same classifier's
penultimate features. The numbers are only comparable between runs that use the same
classifier — its cache key (:mod:`pipeline_plugins.metrics.classifier_cache`) makes that
explicit — and never with published Inception FIDs.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import Tensor, nn

#: images per forward pass when running the net over many images
CHUNK = 2048


class FeatureNet(nn.Module):
    """Images ``(n, c, h, w)`` → 128 features (``features``) → class logits (``forward``)."""

    #: read by torchmetrics' FrechetInceptionDistance for a custom feature extractor
    num_features = 128

    def __init__(self, in_channels: int, size: int, num_classes: int) -> None:
        super().__init__()
        side = size
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU()]
        if side > 8:
            layers.append(nn.MaxPool2d(2))
            side //= 2
        layers += [nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        side //= 2
        while side > 8:
            layers.append(nn.MaxPool2d(2))
            side //= 2
        layers += [nn.Flatten(), nn.Linear(64 * side * side, self.num_features), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(self.num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def batches(x: Tensor, chunk: int = CHUNK) -> Iterator[Tensor]:
    """``x`` in slices of ``chunk`` images along the first dimension."""
    for i in range(0, x.shape[0], chunk):
        yield x[i : i + chunk]
