"""The original GAN loss: binary cross-entropy on logits, real → 1, fake → 0.

Goodfellow et al. 2014, "Generative Adversarial Nets". The critic returns logits and the
loss uses the numerically stable logits form (never sigmoid + BCELoss). The generator
term is the non-saturating ``-log D(G(z))`` by default (the paper's practical advice,
section 3), or the ``minimax`` ``log(1 - D(G(z)))`` of the value function.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

from pipeline import hookimpl
from pipeline.types import Loss, Settings

if TYPE_CHECKING:
    from torch import Tensor


class BCESettings(Settings):
    #: non_saturating: -log D(G(z)) (Goodfellow 2014, §3); minimax: log(1 - D(G(z)))
    generator: Literal["non_saturating", "minimax"] = "non_saturating"


class BCE(Loss):
    name = "bce"
    description = "original GAN: BCE with logits, real→1, fake→0 (Goodfellow 2014)"
    Settings = BCESettings

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        import torch.nn.functional as F

        # -log σ(r) = softplus(-r); -log(1 - σ(f)) = softplus(f)
        return F.softplus(-real_scores).mean() + F.softplus(fake_scores).mean()

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        import torch.nn.functional as F

        if self.settings.generator == "minimax":
            # log(1 - σ(f)) = -softplus(f)
            return -F.softplus(fake_scores).mean()
        return F.softplus(-fake_scores).mean()


@hookimpl
def register_losses(register):
    register(BCE)
