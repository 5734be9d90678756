"""``train.lr_decay``: the learning-rate factor of a generator step, and setting it.

``linear`` keeps the optimizers' rates until ``lr_decay_start · steps``, then scales them by
a factor falling linearly to 0 at ``steps``: the schedule of WGAN-GP's image code
(Gulrajani et al. 2017, gan_cifar_resnet.py: ``1 - step/steps``) and of SN-GAN's code
(Miyato et al. 2018, sngan_projection: Adam's α shifted linearly to 0).

A pure function of the step, set before each step: a resumed run gets the same rates without
state of its own (torch's ``LambdaLR`` would checkpoint a step counter that duplicates the
trainer's step). A resume that raises ``train.steps`` stretches the schedule.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from pipeline.experiment.config import TrainSettings


def lr_factor(cfg: TrainSettings, step: int) -> float:
    """The factor on the learning rates at generator step ``step`` (0-based)."""
    if cfg.lr_decay == "none":
        return 1.0
    start = cfg.lr_decay_start * cfg.steps
    if step < start:
        return 1.0
    return max(0.0, 1.0 - (step - start) / (cfg.steps - start))


def base_rates(optimizers: Sequence[torch.optim.Optimizer]) -> list[list[float]]:
    """Each optimizer's param-group rates as built: what the factor scales."""
    return [[group["lr"] for group in opt.param_groups] for opt in optimizers]


def set_rates(
    optimizers: Sequence[torch.optim.Optimizer], bases: list[list[float]], factor: float
) -> None:
    for opt, rates in zip(optimizers, bases, strict=True):
        for group, base in zip(opt.param_groups, rates, strict=True):
            group["lr"] = base * factor
