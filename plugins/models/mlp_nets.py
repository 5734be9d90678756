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
    """Samples ``(n, *data_shape)`` → unbounded scores ``(n / pack,)``.

    With ``pack`` m > 1 (PacGAN, Lin et al. 2018) consecutive runs of m samples are
    concatenated into one input and get one score; ``pack`` is public so that a penalty can
    take the gradient norm per packed input (``gradient_penalty``).
    """

    def __init__(
        self,
        data_shape: tuple[int, ...],
        width: int,
        depth: int,
        activation: Literal["relu", "leaky_relu"],
        pack: int = 1,
    ) -> None:
        super().__init__()
        #: samples per score (PacGAN's m)
        self.pack = pack
        layers: list[nn.Module] = []
        fan_in = math.prod(data_shape) * pack
        for _ in range(depth):
            layers.append(nn.Linear(fan_in, width))
            layers.append(nn.ReLU() if activation == "relu" else nn.LeakyReLU(0.2))
            fan_in = width
        layers.append(nn.Linear(fan_in, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        flat = x.flatten(1)
        if self.pack > 1:
            if flat.shape[0] % self.pack:
                raise ValueError(
                    f"model.pack: the critic scores packs of {self.pack} samples; "
                    f"got a batch of {flat.shape[0]}"
                )
            flat = flat.reshape(flat.shape[0] // self.pack, -1)
        return self.net(flat).squeeze(-1)
