"""digits: the 1,797 8×8 handwritten digits bundled with scikit-learn.

``sklearn.datasets.load_digits()`` (the UCI optical digits test set, Alpaydin & Kaynak
1998) ships inside scikit-learn, so nothing is downloaded. Pixel values 0..16 are
scaled to [-1, 1] as ``x/8 - 1``; one sample has shape ``(1, 8, 8)`` (channels first).
``sample`` draws images uniformly with replacement. The class of each image is kept in
``labels`` (int64, aligned with ``images``) for the image metrics, which measure quality
in the features of a small classifier trained on these labels.
"""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits
from torch import Tensor

from pipeline import hookimpl
from pipeline.types import Dataset, Settings
from pipeline_plugins.datasets.mixture import sample_rows


class DigitsSettings(Settings):
    pass


class Digits(Dataset):
    name = "digits"
    description = "sklearn load_digits: 1,797 8×8 digits scaled to [-1, 1], shape (1, 8, 8)"
    Settings = DigitsSettings

    def __init__(self, settings: DigitsSettings | None = None) -> None:
        super().__init__(settings)
        bunch = load_digits()
        pixels = torch.from_numpy(bunch.data).to(torch.float32)  # (1797, 64), 0..16
        self.images = (pixels / 8.0 - 1.0).reshape(-1, 1, 8, 8).contiguous()
        self.labels = torch.from_numpy(bunch.target).to(torch.int64)
        self.shape = (1, 8, 8)
        self.centers = None
        self.std = None

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        return sample_rows(self.images, n, generator)


@hookimpl
def register_datasets(register):
    register(Digits)
