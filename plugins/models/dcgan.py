"""A small DCGAN-style convolutional generator and critic for square images.

After Radford et al. 2016, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks": the generator projects the noise with a Linear layer,
reshapes it to ``(C, s0, s0)`` and doubles the resolution ``k`` times with 4×4 stride-2
transposed convolutions (batch norm + ReLU before each), ending in tanh; the critic
mirrors it with 4×4 stride-2 convolutions and LeakyReLU(0.2), halving the channel count
towards the image in the generator and doubling it away from it in the critic.

Unlike the paper's discriminator, the critic has no batch norm (as Gulrajani et al. 2017
advise for the gradient penalty, §4): each sample is scored on its own, so the gradient
penalty is well defined and ``critic(cat([real, fake]))`` equals scoring them apart. Its
output is an unbounded score (no sigmoid).

Supported shapes are ``(c, H, H)`` for any channel count ``c`` and ``H`` in
:data:`SUPPORTED_SIZES` (``H = s0 · 2^k``): 8 (scikit-learn digits, 2×2 after k=2),
16 (4×4, k=2), 28 (MNIST-style, 7×7, k=2), 32 (4×4, k=3) and 64 (4×4, k=4).
The paper's own net is 64×64 with 100-d noise and base width 128; the defaults here are
scaled down for 8×8 digits.
"""

from __future__ import annotations

from pydantic import Field

from pipeline import hookimpl
from pipeline.types import Model, ModelPair, Settings

#: image side H → number k of stride-2 stages (start size s0 = H / 2^k)
SUPPORTED_SIZES: dict[int, int] = {8: 2, 16: 2, 28: 2, 32: 3, 64: 4}


def _supported_text() -> str:
    return ", ".join(f"(c, {h}, {h})" for h in SUPPORTED_SIZES)


class DCGANSettings(Settings):
    #: noise dimension; Radford et al. use 100 for 64×64 images, 64 suits 8×8 digits
    noise_dim: int = Field(default=64, ge=1)
    #: base width: channels of the stage nearest the image (×2 per stage inwards);
    #: Radford et al. use 128 at 64×64
    channels: int = Field(default=64, ge=1)


class DCGAN(Model):
    name = "dcgan"
    description = "small DCGAN-style conv pair, critic without batch norm (Radford 2016)"
    Settings = DCGANSettings

    def build(self, data_shape: tuple[int, ...]) -> ModelPair:
        shape = tuple(int(d) for d in data_shape)
        if (
            len(shape) != 3
            or shape[0] < 1
            or shape[1] != shape[2]
            or shape[1] not in SUPPORTED_SIZES
        ):
            raise ValueError(
                f"dcgan: unsupported data shape {shape}; supported: {_supported_text()} "
                "(square images, any channel count c ≥ 1)"
            )
        from pipeline_plugins.models.dcgan_nets import DCGANCritic, DCGANGenerator

        c, size = shape[0], shape[1]
        s = self.settings
        return ModelPair(
            generator=DCGANGenerator(s.noise_dim, c, size, s.channels),
            critic=DCGANCritic(c, size, s.channels),
            noise_dim=s.noise_dim,
            critic_batch_independent=True,  # the critic has no batch norm
        )


def __getattr__(name: str) -> object:
    """``DCGANGenerator`` and ``DCGANCritic`` from :mod:`pipeline_plugins.models.dcgan_nets`,
    imported on first use: generators logged to MLflow before the nets moved there are
    pickled under this module's name."""
    if name in ("DCGANGenerator", "DCGANCritic"):
        from pipeline_plugins.models import dcgan_nets

        return getattr(dcgan_nets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@hookimpl
def register_models(register):
    register(DCGAN)
