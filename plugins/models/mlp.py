"""Fully connected generator and critic for data of any shape (flattened in, reshaped out).

Defaults are the WGAN-GP toy networks (Gulrajani et al. 2017, "Improved Training of
Wasserstein GANs", caogang/wgan-gp ``gan_toy.py``): the generator maps 2-D N(0, 1) noise
through 3 hidden layers of 512 ReLU units to a point; the critic is 3 hidden layers of 512
ReLU units to one score.

PacGAN's generator (Lin et al. 2018, "PacGAN: The power of two samples in generative
adversarial networks", Table 1 setup: 4×400 with batch norm + ReLU, critic 3×200) is
``g_width: 400, g_depth: 4, g_batch_norm: true, d_width: 200, d_depth: 3``. Their
discriminator uses maxout units; ours uses ReLU (or leaky ReLU), not maxout.

PacGAN's packing (Lin et al. 2018, Section 3) is ``pack: m``: the critic scores m samples at
once, concatenated (its first layer takes m times the sample size), real with real and fake
with fake; ``pack: 1`` is the ordinary critic, unchanged. The batch size must be a multiple
of m (checked when the experiment is loaded). PacGAN2 and PacGAN4 are ``pack: 2`` and
``pack: 4`` on the PacGAN nets above.

The generator's last layer is linear for points; for image shapes ``(c, h, w)`` it ends
with tanh, since images are scaled to [-1, 1]. Batch norm, when on, sits between each
hidden Linear and its ReLU (generator only). The critic never has batch norm, so it
scores each sample independently and its output is an unbounded score (no sigmoid).
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pipeline import hookimpl
from pipeline.types import Model, ModelPair, Settings


class MLPSettings(Settings):
    #: dimension of the N(0, 1) noise; 2 in gan_toy.py and in PacGAN's 2-D experiments
    noise_dim: int = Field(default=2, ge=1)
    #: generator hidden width; 512 in gan_toy.py (PacGAN: 400)
    g_width: int = Field(default=512, ge=1)
    #: generator hidden layers; 3 in gan_toy.py (PacGAN: 4)
    g_depth: int = Field(default=3, ge=1)
    #: batch norm between each generator Linear and ReLU; off in gan_toy.py (PacGAN: on)
    g_batch_norm: bool = False
    #: critic hidden width; 512 in gan_toy.py (PacGAN: 200, maxout)
    d_width: int = Field(default=512, ge=1)
    #: critic hidden layers; 3 in gan_toy.py and PacGAN
    d_depth: int = Field(default=3, ge=1)
    #: critic hidden activation; ReLU in gan_toy.py (leaky_relu uses slope 0.2)
    d_activation: Literal["relu", "leaky_relu"] = "relu"
    #: PacGAN's packing degree m (Lin et al. 2018): the critic scores m samples
    #: concatenated; 1 (no packing) as in gan_toy.py; PacGAN2/3/4 use 2/3/4
    pack: int = Field(default=1, ge=1)


class MLP(Model):
    name = "mlp"
    description = "fully connected pair; defaults: WGAN-GP toy nets, 3×512 ReLU (Gulrajani 2017)"
    Settings = MLPSettings

    def build(self, data_shape: tuple[int, ...]) -> ModelPair:
        s = self.settings
        shape = tuple(int(d) for d in data_shape)
        if not shape or any(d < 1 for d in shape):
            raise ValueError(f"mlp: data shape must be non-empty positive sizes, got {shape}")
        from pipeline_plugins.models.mlp_nets import MLPCritic, MLPGenerator

        generator = MLPGenerator(s.noise_dim, shape, s.g_width, s.g_depth, s.g_batch_norm)
        critic = MLPCritic(shape, s.d_width, s.d_depth, s.d_activation, pack=s.pack)
        return ModelPair(
            generator=generator,
            critic=critic,
            noise_dim=s.noise_dim,
            # no batch norm in the critic: each sample (each pack of m) is scored alone
            critic_batch_independent=True,
        )


def __getattr__(name: str) -> object:
    """``MLPGenerator`` and ``MLPCritic`` from :mod:`pipeline_plugins.models.mlp_nets`,
    imported on first use: generators logged to MLflow before the nets moved there are
    pickled under this module's name."""
    if name in ("MLPGenerator", "MLPCritic"):
        from pipeline_plugins.models import mlp_nets

        return getattr(mlp_nets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_models(register):
    register(MLP)
