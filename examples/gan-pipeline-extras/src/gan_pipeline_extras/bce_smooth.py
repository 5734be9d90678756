"""BCE with one-sided label smoothing: real targets 0.9, fake targets stay 0.

Salimans et al. 2016, "Improved Techniques for Training GANs", §3.4: replacing the
critic's positive targets 1 by α = 0.9 (and only those: smoothing the negative targets
too would reinforce the generator's current samples) keeps the critic from growing
over-confident. The generator keeps the non-saturating ``-log D(G(z))`` of the original
GAN, unsmoothed. Computed on logits with softplus, never sigmoid + log:
``BCE(x, t) = t·softplus(-x) + (1 - t)·softplus(x)``.
"""

from __future__ import annotations

import torch.nn.functional as F
from pydantic import Field
from torch import Tensor

from pipeline import hookimpl
from pipeline.types import Loss, Settings


class BCESmoothSettings(Settings):
    #: target of real samples (Salimans et al. 2016, §3.4: 0.9); 1.0 is plain BCE
    real_target: float = Field(default=0.9, gt=0.5, le=1.0)


class BCESmooth(Loss):
    name = "bce_smooth"
    description = "BCE with one-sided label smoothing, real→0.9, fake→0 (Salimans 2016)"
    Settings = BCESmoothSettings

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        t = self.settings.real_target
        real_term = t * F.softplus(-real_scores) + (1 - t) * F.softplus(real_scores)
        return real_term.mean() + F.softplus(fake_scores).mean()

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        return F.softplus(-fake_scores).mean()


@hookimpl
def register_losses(register):
    register(BCESmooth)
