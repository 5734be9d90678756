"""How the feature classifier is trained (:class:`Recipe`, :func:`train_classifier`).

Adam (Kingma & Ba 2015) at its paper default lr 1e-3, cross-entropy, batches of 64 over
reshuffled epochs, ``max(500, 2 epochs)`` steps — 500 steps (22 epochs) for the 1,438
training digits, 1,875 for MNIST's 60,000 — with the learning rate divided by 10 for the
last 20 % of the steps. Deterministic: on the CPU, single-threaded
(``torch.set_num_threads(1)`` for the duration, so the result does not depend on the core
count and cores shared with a running GAN are not oversubscribed; README, "Images"), seeded
(``Recipe.seed``), inside ``torch.random.fork_rng`` so the caller's global RNG is left
exactly as it was: training the classifier in the middle of a GAN run (building its layers
draws random numbers) must not change that run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline_plugins.metrics.feature_net import FeatureNet, batches
from pipeline_plugins.metrics.labelled_images import LabelledSplit


@dataclass(frozen=True)
class Recipe:
    """How the classifier is trained (see the module docstring for the sources)."""

    #: at least this many steps, and at least ``epochs`` passes over the training data
    min_steps: int = 500
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    #: fraction of the steps, at the end, run at lr / 10
    decay_fraction: float = 0.2
    seed: int = 0


@torch.no_grad()
def accuracy(net: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Share of ``images`` whose predicted class is their label."""
    predicted = torch.cat([net(b).argmax(1) for b in batches(images)])
    return float((predicted == labels).float().mean())


def train_classifier(split: LabelledSplit, recipe: Recipe) -> tuple[FeatureNet, float, float]:
    """Train a :class:`FeatureNet`; returns it (eval mode), its held-out accuracy and seconds."""
    start = time.perf_counter()
    x, y = split.train_images, split.train_labels
    c, h, _ = x.shape[1:]
    steps = max(recipe.min_steps, -(-recipe.epochs * len(y) // recipe.batch_size))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            net = _fit(x, y, c, h, split.num_classes, recipe, steps)
    finally:
        torch.set_num_threads(threads)
    held = accuracy(net, split.heldout_images, split.heldout_labels)
    return net, held, time.perf_counter() - start


def _fit(x: Tensor, y: Tensor, c: int, h: int, k: int, recipe: Recipe, steps: int) -> FeatureNet:
    torch.manual_seed(recipe.seed)
    net = FeatureNet(c, h, k)
    g = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    decay_at = round(steps * (1 - recipe.decay_fraction))
    order, pos = torch.randperm(len(y), generator=g), 0
    net.train()
    for step in range(steps):
        if step == decay_at:
            for group in opt.param_groups:
                group["lr"] = recipe.lr / 10
        if pos + recipe.batch_size > len(y):
            order, pos = torch.randperm(len(y), generator=g), 0
        idx = order[pos : pos + recipe.batch_size]
        pos += recipe.batch_size
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    return net
