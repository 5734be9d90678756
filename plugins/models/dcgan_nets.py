"""The torch networks of the ``dcgan`` model plugin (see :mod:`pipeline_plugins.models.dcgan`).

Apart from the plugin so that loading the plugin (``pipeline plugins``, checking an
experiment file) does not import torch; ``DCGAN.build`` imports this module.
"""

from __future__ import annotations

from torch import Tensor, nn

from pipeline_plugins.models.dcgan import SUPPORTED_SIZES


class DCGANGenerator(nn.Module):
    """Noise ``(n, noise_dim)`` → images ``(n, c, H, H)`` in [-1, 1]."""

    def __init__(self, noise_dim: int, image_channels: int, size: int, base: int) -> None:
        super().__init__()
        k = SUPPORTED_SIZES[size]
        self.s0 = size // 2**k
        self.top = base * 2 ** (k - 1)
        self.project = nn.Linear(noise_dim, self.top * self.s0 * self.s0)
        layers: list[nn.Module] = []
        ch = self.top
        for stage in range(k):
            out = image_channels if stage == k - 1 else ch // 2
            layers += [
                nn.BatchNorm2d(ch),
                nn.ReLU(),
                nn.ConvTranspose2d(ch, out, kernel_size=4, stride=2, padding=1),
            ]
            ch = out
        layers.append(nn.Tanh())
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        h = self.project(z).view(z.shape[0], self.top, self.s0, self.s0)
        return self.net(h)


class DCGANCritic(nn.Module):
    """Images ``(n, c, H, H)`` → unbounded scores ``(n,)``; no batch norm."""

    def __init__(self, image_channels: int, size: int, base: int) -> None:
        super().__init__()
        k = SUPPORTED_SIZES[size]
        s0 = size // 2**k
        layers: list[nn.Module] = []
        ch_in, ch = image_channels, base
        for _ in range(k):
            layers += [
                nn.Conv2d(ch_in, ch, kernel_size=4, stride=2, padding=1),
                nn.LeakyReLU(0.2),
            ]
            ch_in, ch = ch, ch * 2
        self.net = nn.Sequential(*layers)
        self.head = nn.Linear(ch_in * s0 * s0, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.net(x).flatten(1)).squeeze(-1)
