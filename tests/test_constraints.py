"""The critic constraints, on small real critics: no mocks."""

from __future__ import annotations

import math

import pytest
import torch
from pydantic import ValidationError
from torch import Tensor, nn
from torch.nn.utils import parametrize

from pipeline.types import Constraint
from pipeline_plugins.constraints import gradient_penalty, none, spectral_norm, weight_clipping
from pipeline_plugins.constraints.gradient_penalty import GradientPenalty
from pipeline_plugins.constraints.none import NoConstraint
from pipeline_plugins.constraints.spectral_norm import SpectralNorm
from pipeline_plugins.constraints.weight_clipping import WeightClipping


class Flat(nn.Module):
    """Wraps a network whose output is (n, 1) so the critic returns (n,)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x).flatten()


def mlp_critic(hidden: int = 16) -> Flat:
    return Flat(
        nn.Sequential(
            nn.Linear(2, hidden),
            nn.Tanh(),
            nn.Linear(hidden, hidden),
            nn.Tanh(),
            nn.Linear(hidden, 1),
        )
    )


def conv_critic() -> Flat:
    """Scores (n, 1, 8, 8) images."""
    return Flat(
        nn.Sequential(
            nn.Conv2d(1, 4, 3, stride=2, padding=1),  # -> 4 x 4 x 4
            nn.Tanh(),
            nn.Conv2d(4, 8, 3, stride=2, padding=1),  # -> 8 x 2 x 2
            nn.Tanh(),
            nn.Flatten(),
            nn.Linear(32, 1),
        )
    )


def linear_critic(w: list[float], b: float) -> Flat:
    layer = nn.Linear(2, 1)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([w]))
        layer.bias.fill_(b)
    return Flat(layer)


# -- none ---------------------------------------------------------------------------


def test_none_changes_nothing() -> None:
    torch.manual_seed(0)
    critic = mlp_critic()
    before = {k: v.clone() for k, v in critic.state_dict().items()}
    c = NoConstraint()
    assert c.wrap_critic(critic) is critic
    x = torch.randn(4, 2)
    assert c.penalty(critic, x, x) is None
    c.after_critic_step(critic)
    assert c.diagnostics(critic) == {}
    after = critic.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


# -- weight clipping ----------------------------------------------------------------


def test_weight_clipping_clamps_every_parameter_in_place() -> None:
    torch.manual_seed(0)
    critic = mlp_critic()
    with torch.no_grad():
        for p in critic.parameters():
            p.normal_(0.0, 1.0)  # far beyond the bound
    params = list(critic.parameters())
    expected = [p.detach().clamp(-0.05, 0.05) for p in params]
    clipping = WeightClipping(WeightClipping.Settings(clip=0.05))
    clipping.after_critic_step(critic)
    for p, e in zip(params, expected, strict=True):
        assert (p.abs() <= 0.05).all()  # compared in the parameter's dtype
        assert torch.equal(p.detach(), e)  # in place: the optimizer's tensors are clipped
        assert p.grad is None
    # values at the bound exist, so the test would notice no clipping
    assert any((p.abs() == 0.05).any() for p in params)
    assert all(p.requires_grad for p in critic.parameters())


def test_weight_clipping_default_is_the_paper_value() -> None:
    assert WeightClipping().settings.clip == 0.01


@pytest.mark.parametrize("clip", [0.0, -0.01])
def test_weight_clipping_rejects_non_positive_clip(clip: float) -> None:
    with pytest.raises(ValidationError):
        WeightClipping.Settings(clip=clip)


# -- gradient penalty ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight", "w"), [(10.0, [3.0, 4.0]), (0.1, [0.3, -0.4]), (2.0, [1.0, 0.0])]
)
def test_gradient_penalty_of_linear_critic(weight: float, w: list[float]) -> None:
    torch.manual_seed(0)
    critic = linear_critic(w, b=0.7)
    real = torch.randn(32, 2)
    fake = torch.randn(32, 2) * 3 + 1
    penalty = GradientPenalty(GradientPenalty.Settings(weight=weight)).penalty(critic, real, fake)
    assert penalty is not None
    norm = math.sqrt(sum(x * x for x in w))
    assert penalty.item() == pytest.approx(weight * (norm - 1.0) ** 2, rel=1e-5, abs=1e-7)


def test_gradient_penalty_interpolates_per_sample_on_the_segment() -> None:
    seen: list[Tensor] = []

    class Recording(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 1, 1)

        def forward(self, x: Tensor) -> Tensor:
            seen.append(x.detach().clone())
            return self.conv(x).mean(dim=(1, 2, 3))

    torch.manual_seed(0)
    real = torch.randn(16, 3, 4, 4)
    fake = torch.randn(16, 3, 4, 4) + 5.0
    GradientPenalty().penalty(Recording(), real, fake)
    (x_hat,) = seen
    # x̂ = α real + (1 - α) fake  =>  α = (x̂ - fake) / (real - fake), one α per sample
    alpha = (x_hat - fake) / (real - fake)
    per_sample = alpha.flatten(1)
    assert torch.allclose(per_sample, per_sample[:, :1].expand_as(per_sample), atol=1e-4)
    a = per_sample[:, 0]
    assert ((a >= 0) & (a <= 1)).all()
    assert a.std() > 0.05  # distinct α per sample, not one for the batch


def test_gradient_penalty_reproduces_under_a_seed() -> None:
    torch.manual_seed(1)
    critic = mlp_critic()
    real, fake = torch.randn(64, 2), torch.randn(64, 2)
    gp = GradientPenalty()
    torch.manual_seed(123)
    first = gp.penalty(critic, real, fake)
    second_draw = gp.penalty(critic, real, fake)
    torch.manual_seed(123)
    again = gp.penalty(critic, real, fake)
    assert first is not None and again is not None and second_draw is not None
    assert torch.equal(first, again)
    assert not torch.equal(first, second_draw)


def test_gradient_penalty_on_images_trains_the_critic_not_the_generator() -> None:
    torch.manual_seed(0)
    critic = conv_critic()
    generator = nn.Linear(4, 64)
    real = torch.rand(8, 1, 8, 8) * 2 - 1
    fake = generator(torch.randn(8, 4)).view(8, 1, 8, 8)  # carries a graph to the generator
    penalty = GradientPenalty().penalty(critic, real, fake)
    assert penalty is not None
    assert penalty.shape == () and torch.isfinite(penalty)
    assert penalty.item() > 0
    penalty.backward()
    net = critic.net
    for layer in (net[0], net[2], net[5]):
        assert layer.weight.grad is not None
        assert torch.isfinite(layer.weight.grad).all()
        assert layer.weight.grad.abs().sum() > 0
    assert generator.weight.grad is None  # fake was detached


def test_gradient_penalty_weight_zero_is_skipped() -> None:
    critic = mlp_critic()
    x = torch.randn(4, 2)
    assert GradientPenalty(GradientPenalty.Settings(weight=0.0)).penalty(critic, x, x) is None


def test_gradient_penalty_defaults_and_validation() -> None:
    assert GradientPenalty().settings.weight == 10.0
    with pytest.raises(ValidationError):
        GradientPenalty.Settings(weight=-0.1)


# -- spectral normalization ---------------------------------------------------------


class MixedCritic(nn.Module):
    """Every layer kind spectral_norm must wrap, with a nested path."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 6, 3, padding=1),
            nn.LeakyReLU(0.2),
            nn.ConvTranspose2d(6, 5, 3, stride=1, padding=1),
            nn.LeakyReLU(0.2),
            nn.Conv2d(5, 8, 4, stride=2, padding=1),  # -> 8 x 4 x 4
            nn.LeakyReLU(0.2),
        )
        self.conv1d = nn.Conv1d(8, 4, 3, padding=1)  # over the 16 positions
        self.head = nn.Sequential(nn.Linear(64, 24), nn.LeakyReLU(0.2), nn.Linear(24, 1))

    def forward(self, x: Tensor) -> Tensor:
        h = self.features(x).flatten(2)  # (n, 8, 16)
        h = self.conv1d(h).flatten(1)  # (n, 64)
        return self.head(h).flatten()


WRAPPED_PATHS = ["features.0", "features.2", "features.4", "conv1d", "head.0", "head.2"]


def scaled_mixed_critic(seed: int, scale: float = 4.0) -> MixedCritic:
    torch.manual_seed(seed)
    critic = MixedCritic()
    with torch.no_grad():
        for name, p in critic.named_parameters():
            if name.endswith("weight"):
                p.mul_(scale)  # start far from σ = 1
    return critic


def weight_matrix(module: nn.Module, weight: Tensor) -> Tensor:
    """(out, -1) view of a layer's weight; dim 1 holds the outputs of a ConvTranspose."""
    if isinstance(module, nn.ConvTranspose2d):
        weight = weight.transpose(0, 1)
    return weight.reshape(weight.shape[0], -1)


def test_spectral_norm_wraps_every_linear_and_conv() -> None:
    critic = scaled_mixed_critic(0)
    wrapped = SpectralNorm().wrap_critic(critic)
    assert wrapped is critic
    modules = dict(critic.named_modules())
    for path in WRAPPED_PATHS:
        assert parametrize.is_parametrized(modules[path], "weight"), path
        assert len(modules[path].parametrizations.weight) == 1
    # wrapping again does not stack a second normalization
    SpectralNorm().wrap_critic(critic)
    assert all(len(modules[p].parametrizations.weight) == 1 for p in WRAPPED_PATHS)


def test_spectral_norm_makes_sigma_one_after_training_passes() -> None:
    critic = scaled_mixed_critic(0)
    plain = {p: weight_matrix(m, m.weight) for p, m in critic.named_modules() if p in WRAPPED_PATHS}
    assert all(torch.linalg.matrix_norm(w, ord=2) > 1.5 for w in plain.values())
    SpectralNorm().wrap_critic(critic)
    critic.train()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        for _ in range(20):
            critic(x)
    critic.eval()  # reading module.weight in eval mode runs no further power iteration
    modules = dict(critic.named_modules())
    for path in WRAPPED_PATHS:
        module = modules[path]
        sigma = torch.linalg.matrix_norm(weight_matrix(module, module.weight.detach()), ord=2)
        assert sigma.item() == pytest.approx(1.0, abs=0.02), path


def test_spectral_norm_diagnostics_match_the_true_sigma_without_side_effects() -> None:
    critic = scaled_mixed_critic(1)
    sn = SpectralNorm()
    sn.wrap_critic(critic)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        for _ in range(20):
            critic(x)
    buffers = {k: v.clone() for k, v in critic.state_dict().items()}
    sigmas = sn.diagnostics(critic)
    assert sorted(sigmas) == sorted(f"sigma/{p}" for p in WRAPPED_PATHS)
    modules = dict(critic.named_modules())
    for path in WRAPPED_PATHS:
        module = modules[path]
        original = module.parametrizations.weight.original.detach()
        true_sigma = torch.linalg.matrix_norm(weight_matrix(module, original), ord=2)
        estimate = sigmas[f"sigma/{path}"]
        assert estimate.shape == () and not estimate.requires_grad
        assert estimate.item() == pytest.approx(true_sigma.item(), rel=0.01), path
        assert true_sigma.item() > 1.5  # the raw weights were scaled up, not normalized
    after = critic.state_dict()
    assert all(torch.equal(buffers[k], after[k]) for k in buffers)  # no power iteration


def test_spectral_norm_u_is_checkpointed() -> None:
    critic = scaled_mixed_critic(2)
    SpectralNorm().wrap_critic(critic)
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        for _ in range(5):
            critic(x)
    state = critic.state_dict()
    for path in WRAPPED_PATHS:
        assert f"{path}.parametrizations.weight.0._u" in state
        assert f"{path}.parametrizations.weight.0._v" in state
        assert f"{path}.parametrizations.weight.original" in state

    fresh = scaled_mixed_critic(3)
    SpectralNorm().wrap_critic(fresh)
    critic.eval()
    fresh.eval()
    with torch.no_grad():
        assert not torch.allclose(fresh(x), critic(x))
        fresh.load_state_dict(state)
        assert torch.equal(fresh(x), critic(x))
    fresh_state = fresh.state_dict()
    assert all(torch.equal(fresh_state[k], state[k]) for k in state)


def test_spectral_norm_settings() -> None:
    critic = MixedCritic()
    SpectralNorm(SpectralNorm.Settings(n_power_iterations=3)).wrap_critic(critic)
    assert critic.head[0].parametrizations.weight[0].n_power_iterations == 3
    assert SpectralNorm().settings.n_power_iterations == 1
    with pytest.raises(ValidationError):
        SpectralNorm.Settings(n_power_iterations=0)


def test_spectral_norm_critic_still_trains() -> None:
    torch.manual_seed(0)
    critic = SpectralNorm().wrap_critic(mlp_critic())
    opt = torch.optim.SGD(critic.parameters(), lr=0.1)
    x = torch.randn(8, 2)
    before = critic.net[0].parametrizations.weight.original.detach().clone()
    loss = -critic(x).mean() + critic(x + 1).mean()  # two passes, as a GAN critic step
    loss.backward()
    opt.step()
    assert not torch.equal(before, critic.net[0].parametrizations.weight.original)


# -- registration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("module", "cls", "name"),
    [
        (none, NoConstraint, "none"),
        (weight_clipping, WeightClipping, "weight_clipping"),
        (gradient_penalty, GradientPenalty, "gradient_penalty"),
        (spectral_norm, SpectralNorm, "spectral_norm"),
    ],
)
def test_each_module_registers_its_constraint(
    module: object, cls: type[Constraint], name: str
) -> None:
    registered: list[type[Constraint]] = []
    module.register_constraints(register=registered.append)
    assert registered == [cls]
    assert cls.name == name and issubclass(cls, Constraint) and cls.description
