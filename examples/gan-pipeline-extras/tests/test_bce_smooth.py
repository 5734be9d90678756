"""BCE with one-sided label smoothing, through gan-pipeline's test kit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from gan_pipeline_extras.bce_smooth import BCESmooth

from pipeline.testing import check_loss, check_trains


def test_keeps_the_loss_contract():
    check_loss(BCESmooth)
    check_loss(BCESmooth, settings={"real_target": 1.0})


def test_real_targets_are_0_9_and_fake_targets_0():
    real, fake = torch.randn(64), torch.randn(64)
    expected = F.binary_cross_entropy_with_logits(
        real, torch.full_like(real, 0.9)
    ) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    assert BCESmooth().critic_loss(real, fake).item() == pytest.approx(expected.item(), rel=1e-6)


def test_the_critic_is_best_at_logit_of_0_9_not_at_infinity():
    # one-sided smoothing: the optimal real logit is log(0.9 / 0.1), not +∞
    loss = BCESmooth()
    fake = torch.full((1,), -30.0)
    best = torch.tensor([math.log(9.0)])
    for other in (best - 0.5, best + 0.5, torch.tensor([30.0])):
        assert loss.critic_loss(best, fake) < loss.critic_loss(other, fake)


def test_generator_term_is_unsmoothed_non_saturating():
    fake = torch.randn(64)
    assert BCESmooth().generator_loss(fake, None).item() == pytest.approx(
        F.softplus(-fake).mean().item(), rel=1e-6
    )


def test_trains():
    result = check_trains(loss=BCESmooth, constraint="none", steps=10)
    assert set(result.metrics) >= {"w1", "modes"}
