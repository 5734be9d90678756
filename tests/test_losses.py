"""The adversarial losses against values computed by hand on small fixed scores."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError

from pipeline.types import Loss
from pipeline_plugins.losses import bce, hinge, least_squares, wgan
from pipeline_plugins.losses.bce import BCE
from pipeline_plugins.losses.hinge import Hinge
from pipeline_plugins.losses.least_squares import LeastSquares
from pipeline_plugins.losses.wgan import WGAN

REAL = [1.0, -2.0]
FAKE = [0.5, 3.0]


def scores() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(REAL), torch.tensor(FAKE)


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_bce_critic_loss_by_hand() -> None:
    # -log σ(r) for real, -log(1 - σ(f)) for fake
    expected = mean([-math.log(sigmoid(r)) for r in REAL]) + mean(
        [-math.log(1.0 - sigmoid(f)) for f in FAKE]
    )
    real, fake = scores()
    assert BCE().critic_loss(real, fake).item() == pytest.approx(expected, rel=1e-6)


def test_bce_non_saturating_generator_by_hand() -> None:
    expected = mean([-math.log(sigmoid(f)) for f in FAKE])
    real, fake = scores()
    loss = BCE().generator_loss(fake, real)
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert BCE().settings.generator == "non_saturating"


def test_bce_minimax_generator_by_hand() -> None:
    expected = mean([math.log(1.0 - sigmoid(f)) for f in FAKE])
    _, fake = scores()
    loss = BCE(BCE.Settings(generator="minimax")).generator_loss(fake, None)
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_wgan_by_hand() -> None:
    real, fake = scores()
    # mean(fake) - mean(real) = 1.75 - (-0.5)
    assert WGAN().critic_loss(real, fake).item() == pytest.approx(2.25)
    assert WGAN().generator_loss(fake, None).item() == pytest.approx(-1.75)
    assert WGAN.estimates_wasserstein is True


def test_hinge_by_hand() -> None:
    real, fake = scores()
    expected = mean([max(0.0, 1.0 - r) for r in REAL]) + mean([max(0.0, 1.0 + f) for f in FAKE])
    assert expected == pytest.approx(4.25)
    assert Hinge().critic_loss(real, fake).item() == pytest.approx(expected)
    assert Hinge().generator_loss(fake, real).item() == pytest.approx(-1.75)


def test_hinge_is_zero_beyond_the_margin() -> None:
    loss = Hinge().critic_loss(torch.tensor([1.5, 2.0]), torch.tensor([-1.0, -3.0]))
    assert loss.item() == 0.0


def test_least_squares_by_hand() -> None:
    real, fake = scores()
    expected_critic = 0.5 * mean([(r - 1.0) ** 2 for r in REAL]) + 0.5 * mean([f**2 for f in FAKE])
    expected_generator = 0.5 * mean([(f - 1.0) ** 2 for f in FAKE])
    assert expected_critic == pytest.approx(4.5625)
    loss = LeastSquares()
    assert loss.critic_loss(real, fake).item() == pytest.approx(expected_critic)
    assert loss.generator_loss(fake, None).item() == pytest.approx(expected_generator)


def test_least_squares_other_coding() -> None:
    # Mao et al. 2017's a = -1, b = 1, c = 0 coding
    real, fake = scores()
    loss = LeastSquares(LeastSquares.Settings(a=-1.0, b=1.0, c=0.0))
    expected_critic = 0.5 * mean([(r - 1.0) ** 2 for r in REAL]) + 0.5 * mean(
        [(f + 1.0) ** 2 for f in FAKE]
    )
    expected_generator = 0.5 * mean([f**2 for f in FAKE])
    assert loss.critic_loss(real, fake).item() == pytest.approx(expected_critic)
    assert loss.generator_loss(fake, None).item() == pytest.approx(expected_generator)


@pytest.mark.parametrize("cls", [BCE, WGAN, Hinge, LeastSquares])
def test_losses_are_scalars_with_gradients(cls: type[Loss]) -> None:
    real = torch.tensor(REAL, requires_grad=True)
    fake = torch.tensor(FAKE, requires_grad=True)
    loss = cls()
    d_loss = loss.critic_loss(real, fake)
    g_loss = loss.generator_loss(fake, real)
    assert d_loss.shape == () and g_loss.shape == ()
    (d_real, d_fake) = torch.autograd.grad(d_loss, (real, fake))
    assert d_real.abs().sum() > 0 and d_fake.abs().sum() > 0
    (g_fake,) = torch.autograd.grad(g_loss, fake)
    assert g_fake.abs().sum() > 0


def test_only_wgan_estimates_wasserstein() -> None:
    assert [c.name for c in (BCE, WGAN, Hinge, LeastSquares) if c.estimates_wasserstein] == ["wgan"]
    assert not any(c.needs_real_scores for c in (BCE, WGAN, Hinge, LeastSquares))


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValidationError):
        WGAN.Settings(clip=0.01)
    with pytest.raises(ValidationError):
        LeastSquares.Settings(d=1.0)


@pytest.mark.parametrize(
    ("module", "cls", "name"),
    [
        (bce, BCE, "bce"),
        (wgan, WGAN, "wgan"),
        (hinge, Hinge, "hinge"),
        (least_squares, LeastSquares, "least_squares"),
    ],
)
def test_each_module_registers_its_loss(module: object, cls: type[Loss], name: str) -> None:
    registered: list[type[Loss]] = []
    module.register_losses(register=registered.append)
    assert registered == [cls]
    assert cls.name == name and issubclass(cls, Loss) and cls.description
