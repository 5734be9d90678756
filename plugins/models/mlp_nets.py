"""The torch networks of the ``mlp`` model plugin (see :mod:`pipeline_plugins.models.mlp`).

Apart from the plugin so that loading the plugin (``pipeline plugins``, checking an
experiment file) does not import torch; ``MLP.build`` imports this module.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import Tensor, nn


class MLPGenerator(nn.Module):
    """Noise ``(n, noise_dim)`` → samples ``(n, *data_shape)``."""

    def __init__(
        self,
        noise_dim: int,
        data_shape: tuple[int, ...],
        width: int,
        depth: int,
        batch_norm: bool,
    ) -> None:
        super().__init__()
        self.data_shape = tuple(data_shape)
        layers: list[nn.Module] = []
        fan_in = noise_dim
        for _ in range(depth):
            layers.append(nn.Linear(fan_in, width))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width))
            layers.append(nn.ReLU())
            fan_in = width
        layers.append(nn.Linear(fan_in, math.prod(self.data_shape)))
        if len(self.data_shape) == 3:
            layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).reshape(z.shape[0], *self.data_shape)


class MLPCritic(nn.Module):
    """Samples ``(n, *data_shape)`` → unbounded scores ``(n,)``."""

    def __init__(
        self,
        data_shape: tuple[int, ...],
        width: int,
        depth: int,
        activation: Literal["relu", "leaky_relu"],
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        fan_in = math.prod(data_shape)
        for _ in range(depth):
            layers.append(nn.Linear(fan_in, width))
            layers.append(nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.2))
            fan_in = width
        layers.append(nn.Linear(fan_in, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(-1)
