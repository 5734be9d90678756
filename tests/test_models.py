"""Model plugins: shapes, gradients, batch norm, settings validation (real torch)."""

from __future__ import annotations

import pydantic
import pytest
import torch
from torch import nn

from pipeline.types import Model, ModelPair
from pipeline_plugins.models.dcgan import DCGAN, SUPPORTED_SIZES
from pipeline_plugins.models.mlp import MLP


def _build(cls: type[Model], shape: tuple[int, ...], **settings) -> ModelPair:
    return cls(cls.Settings(**settings)).build(shape)


def _count(module: nn.Module, kind: type[nn.Module]) -> int:
    return sum(isinstance(m, kind) for m in module.modules())


def _check_shapes(pair: ModelPair, shape: tuple[int, ...], n: int = 5) -> None:
    torch.manual_seed(0)
    fake = pair.generator(torch.randn(n, pair.noise_dim))
    assert fake.shape == (n, *shape)
    scores = pair.critic(fake)
    assert scores.shape == (n,)
    real_scores = pair.critic(torch.randn(n, *shape))
    assert real_scores.shape == (n,)


@pytest.mark.parametrize("shape", [(2,), (1, 8, 8), (3, 4), (3, 32, 32)])
def test_mlp_shapes(shape):
    pair = _build(MLP, shape, g_width=32, d_width=32)
    _check_shapes(pair, shape)


@pytest.mark.parametrize(
    "shape", [(1, 8, 8), (1, 16, 16), (1, 28, 28), (3, 32, 32), (1, 32, 32), (3, 64, 64)]
)
def test_dcgan_shapes(shape):
    pair = _build(DCGAN, shape, channels=8, noise_dim=16)
    assert pair.noise_dim == 16
    _check_shapes(pair, shape)


def test_critic_output_single_sample_is_1d():
    for pair, shape in [
        (_build(MLP, (2,), g_width=8, d_width=8), (2,)),
        (_build(DCGAN, (1, 8, 8), channels=4), (1, 8, 8)),
    ]:
        assert pair.critic(torch.randn(1, *shape)).shape == (1,)


def test_mlp_defaults_are_wgan_gp_toy_nets():
    pair = MLP().build((2,))
    assert pair.noise_dim == 2
    g_linear = [m for m in pair.generator.modules() if isinstance(m, nn.Linear)]
    d_linear = [m for m in pair.critic.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in g_linear] == [
        (2, 512),
        (512, 512),
        (512, 512),
        (512, 2),
    ]
    assert [(m.in_features, m.out_features) for m in d_linear] == [
        (2, 512),
        (512, 512),
        (512, 512),
        (512, 1),
    ]
    assert _count(pair.generator, nn.ReLU) == 3
    assert _count(pair.critic, nn.ReLU) == 3
    assert _count(pair.generator, nn.BatchNorm1d) == 0
    # points: the last generator layer is linear, no squashing
    assert _count(pair.generator, nn.Tanh) == 0


def test_mlp_batch_norm_flag_honoured():
    on = _build(MLP, (2,), g_width=400, g_depth=4, g_batch_norm=True, d_width=200, d_depth=3)
    off = _build(MLP, (2,), g_width=400, g_depth=4, g_batch_norm=False)
    assert _count(on.generator, nn.BatchNorm1d) == 4
    assert _count(off.generator, nn.BatchNorm1d) == 0
    assert _count(on.critic, nn.BatchNorm1d) == 0
    # batch norm sits between Linear and ReLU
    layers = list(on.generator.modules())
    for i, m in enumerate(layers):
        if isinstance(m, nn.BatchNorm1d):
            assert isinstance(layers[i - 1], nn.Linear)
            assert isinstance(layers[i + 1], nn.ReLU)
    # both critics are free of batch norm, so both score samples independently
    assert on.critic_batch_independent is True
    assert off.critic_batch_independent is True


def test_mlp_leaky_relu_critic():
    pair = _build(MLP, (2,), d_width=16, d_activation="leaky_relu")
    assert _count(pair.critic, nn.LeakyReLU) == 3
    assert _count(pair.critic, nn.ReLU) == 0


def test_mlp_image_output_uses_tanh():
    pair = _build(MLP, (1, 8, 8), g_width=16, d_width=16)
    assert _count(pair.generator, nn.Tanh) == 1
    out = pair.generator(torch.randn(64, pair.noise_dim) * 100)
    assert out.abs().max() <= 1.0


def test_dcgan_critic_has_no_batch_norm_and_is_batch_independent():
    pair = _build(DCGAN, (1, 8, 8), channels=8)
    assert pair.critic_batch_independent is True
    assert _count(pair.critic, nn.BatchNorm2d) == 0
    assert _count(pair.critic, nn.BatchNorm1d) == 0
    assert _count(pair.generator, nn.BatchNorm2d) == SUPPORTED_SIZES[8]
    assert _count(pair.critic, nn.Sigmoid) == 0
    # scoring a concatenation equals scoring apart (train mode)
    pair.critic.train()
    a, b = torch.randn(4, 1, 8, 8), torch.randn(6, 1, 8, 8)
    together = pair.critic(torch.cat([a, b]))
    apart = torch.cat([pair.critic(a), pair.critic(b)])
    torch.testing.assert_close(together, apart)


def test_dcgan_generator_output_in_range():
    pair = _build(DCGAN, (1, 8, 8))
    out = pair.generator(torch.randn(32, pair.noise_dim) * 10)
    assert out.min() >= -1.0 and out.max() <= 1.0
    assert out.std() > 0


@pytest.mark.parametrize("cls,shape", [(MLP, (2,)), (MLP, (1, 8, 8)), (DCGAN, (1, 8, 8))])
def test_gradients_flow(cls, shape):
    settings = {"channels": 4} if cls is DCGAN else {"g_width": 16, "d_width": 16}
    pair = _build(cls, shape, **settings)
    z = torch.randn(8, pair.noise_dim)
    # generator loss through the critic reaches every generator parameter
    pair.critic(pair.generator(z)).mean().backward()
    for name, p in pair.generator.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
    assert any(p.grad.abs().sum() > 0 for p in pair.generator.parameters())
    # critic parameters get gradients, and the input gradient (for a penalty) exists
    pair.critic.zero_grad()
    x = torch.randn(8, *shape, requires_grad=True)
    scores = pair.critic(x)
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=True)
    assert grad.shape == x.shape
    assert grad.abs().sum() > 0
    (grad.norm() + scores.mean()).backward()
    for name, p in pair.critic.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("shape", [(1, 9, 9), (2,), (1, 8, 16), (8, 8), (1, 12, 12)])
def test_dcgan_refuses_unsupported_shape(shape):
    with pytest.raises(ValueError) as info:
        DCGAN().build(shape)
    message = str(info.value)
    assert str(tuple(shape)) in message
    assert "(c, 8, 8)" in message and "(c, 28, 28)" in message


@pytest.mark.parametrize(
    "cls,settings",
    [
        (MLP, {"g_width": 0}),
        (MLP, {"d_width": 0}),
        (MLP, {"g_depth": 0}),
        (MLP, {"noise_dim": 0}),
        (MLP, {"d_activation": "tanh"}),
        (MLP, {"unknown": 1}),
        (DCGAN, {"channels": 0}),
        (DCGAN, {"noise_dim": 0}),
    ],
)
def test_settings_validation(cls, settings):
    with pytest.raises(pydantic.ValidationError):
        cls.Settings(**settings)


def test_plugin_metadata():
    for cls, name in [(MLP, "mlp"), (DCGAN, "dcgan")]:
        assert issubclass(cls, Model)
        assert cls.name == name
        assert cls.description
        assert cls().settings == cls.Settings()


def test_register_hooks_and_entry_points():
    from importlib.metadata import entry_points

    from pipeline_plugins.models import dcgan, mlp

    registered: list[type] = []
    mlp.register_models(registered.append)
    dcgan.register_models(registered.append)
    assert registered == [MLP, DCGAN]
    eps = {ep.name: ep for ep in entry_points(group="gan_pipeline")}
    assert eps["model-mlp"].load() is mlp
    assert eps["model-dcgan"].load() is dcgan
