"""What the classifier-feature metrics take: labelled image datasets and samples of their shape.

The metrics (``classifier_fd``, ``class_coverage``, ``class_kl``, ``precision``, ``recall``,
``classifier_accuracy``) apply to an :class:`~pipeline.types.ImageDataset` whose ``labels``
hold at least two classes. Their classifier trains on ``train_images``/``train_labels``
when the dataset has them (the digits plugin's first 80 %), else on ``images``/``labels``;
its accuracy is measured on ``heldout_images``/``heldout_labels`` when present (digits'
last 20 %, MNIST's t10k set), else on a seeded 20 % of the labelled images that it then
does not train on (``HELDOUT_FRACTION``, ``SPLIT_SEED``). The real reference of every
metric is the classifier's training images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from pipeline.types import Dataset, ImageDataset

#: share held out when the dataset has no held-out split of its own, and its seed
HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0


@dataclass
class LabelledSplit:
    """The classifier's training and held-out images and labels."""

    train_images: Tensor
    train_labels: Tensor
    heldout_images: Tensor
    heldout_labels: Tensor
    num_classes: int


def has_labelled_images(dataset: Dataset) -> bool:
    """The image metrics apply: an image dataset with integer labels of at least two classes."""
    if not isinstance(dataset, ImageDataset) or not dataset.is_image or dataset.labels is None:
        return False
    labels = dataset.labels
    return labels.numel() > 0 and int(labels.unique().numel()) >= 2


def labelled_split(dataset: Dataset) -> LabelledSplit:
    """Training and held-out images and labels, as described in the module docstring."""
    if not has_labelled_images(dataset):
        raise ValueError(
            f"dataset {dataset.name!r} has no labelled images: the classifier-feature "
            "metrics need image data with integer labels"
        )
    assert isinstance(dataset, ImageDataset) and dataset.labels is not None
    train_x, train_y = dataset.train_images, dataset.train_labels
    if train_x is None or train_y is None:
        train_x, train_y = dataset.images, dataset.labels
    held_x, held_y = dataset.heldout_images, dataset.heldout_labels
    if held_x is None or held_y is None:
        n = len(train_y)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
        n_held = max(1, round(HELDOUT_FRACTION * n))
        held, kept = order[:n_held].sort().values, order[n_held:].sort().values
        train_x, train_y, held_x, held_y = (
            train_x[kept],
            train_y[kept],
            train_x[held],
            train_y[held],
        )
    num_classes = int(max(train_y.max(), held_y.max())) + 1
    return LabelledSplit(
        train_x.float().contiguous(),
        train_y.long().contiguous(),
        held_x.float().contiguous(),
        held_y.long().contiguous(),
        num_classes,
    )


def checked_samples(samples: Tensor, dataset: Dataset, metric: str) -> Tensor:
    """``samples`` as a CPU float tensor after checking their shape against the dataset's."""
    if samples.ndim < 1 or samples.shape[0] < 2:
        raise ValueError(f"{metric} needs at least two samples, got shape {tuple(samples.shape)}")
    if tuple(samples.shape[1:]) != tuple(dataset.shape):
        raise ValueError(
            f"{metric}: samples of shape {tuple(samples.shape[1:])} do not match the "
            f"dataset's {tuple(dataset.shape)}"
        )
    return samples.detach().to("cpu", torch.float32)
