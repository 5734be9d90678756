"""Public types of the hook contract: the base class of each kind of plugin.

A plugin is a class. It carries its ``name`` (the name experiment files use), a
one-line ``description`` and a ``Settings`` model (pydantic, unknown keys refused)
whose defaults cite the paper they come from. The host validates the settings from
the experiment file and instantiates the class with them: ``Plugin(settings)``.

Plugins import only this module and :mod:`pipeline.hookspecs` (through
``pipeline.hookimpl``), never the training loop, the tuner or the CLI.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

if TYPE_CHECKING:  # torch only in annotations: reading an experiment file needs no torch
    import torch
    from torch import Tensor, nn

Kind = Literal["loss", "constraint", "optimizer", "dataset", "model", "metric"]
KINDS: tuple[Kind, ...] = ("loss", "constraint", "optimizer", "dataset", "model", "metric")


class Settings(BaseModel):
    """Base of every plugin's settings: typed fields, unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Plugin:
    """What every plugin class has: a name, a description and its settings model."""

    kind: ClassVar[Kind]
    name: ClassVar[str]
    description: ClassVar[str] = ""
    Settings: ClassVar[type[Settings]] = Settings

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings if settings is not None else type(self).Settings()


class Loss(Plugin):
    """An adversarial loss: pure functions of critic outputs.

    The critic returns one unbounded score (a logit for BCE) per sample.
    ``generator_loss`` also receives the scores of real data, which relativistic
    losses need; losses that do not need them set ``needs_real_scores = False`` so
    the loop can skip that critic pass.
    """

    kind = "loss"
    #: the generator term uses ``real_scores`` (relativistic losses)
    needs_real_scores: ClassVar[bool] = False
    #: ``-critic_loss`` (without penalty) estimates the Wasserstein-1 distance
    estimates_wasserstein: ClassVar[bool] = False

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        raise NotImplementedError

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        raise NotImplementedError


class Constraint(Plugin):
    """A constraint on the critic, acting where it belongs.

    - ``wrap_critic``: at build time (spectral normalization);
    - ``penalty``: a term added to the critic loss; sees the critic and both the real
      and the fake batch (gradient penalty, R1, DRAGAN);
    - ``after_critic_step``: after every critic optimizer step (weight clipping);
    - ``diagnostics``: tensors to log as metrics (σ estimates), computed on log steps.

    Never call ``backward()`` or ``step()`` here: the training loop does.
    """

    kind = "constraint"
    #: the critic may score ``cat([real, fake])`` in one pass (False if the
    #: constraint depends on seeing each batch separately)
    allows_single_pass: ClassVar[bool] = True

    def wrap_critic(self, critic: nn.Module) -> nn.Module:
        return critic

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        return None

    def after_critic_step(self, critic: nn.Module) -> None:
        return None

    def diagnostics(self, critic: nn.Module) -> dict[str, Tensor]:
        return {}


class Optimizer(Plugin):
    """Builds a torch optimizer for the parameters it is given, from its own settings."""

    kind = "optimizer"

    def build(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer:
        raise NotImplementedError


class Dataset(Plugin):
    """A source of real samples.

    ``sample(n, generator)`` returns ``n`` samples of shape ``(n, *shape)`` on the CPU,
    drawn with ``generator`` so that a seed reproduces them. 2-D mixtures also give
    their mode ``centers`` and per-mode ``std`` (the VEEGAN/PacGAN metrics need them).
    Images are scaled to [-1, 1].
    """

    kind = "dataset"
    #: shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``
    shape: tuple[int, ...] = (2,)
    #: mode centres, ``(n_modes, 2)``, for mixtures; None otherwise
    centers: Tensor | None = None
    #: standard deviation of each mode (the 3σ high-quality threshold uses it)
    std: float | None = None

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        raise NotImplementedError


@dataclass
class ModelPair:
    """A generator and its critic, as a model plugin builds them."""

    generator: nn.Module
    critic: nn.Module
    #: the generator's input is ``torch.randn(n, noise_dim)``
    noise_dim: int
    #: the critic scores each sample independently (no batch norm), so
    #: ``critic(cat([real, fake]))`` equals scoring them apart
    critic_batch_independent: bool = True


class Model(Plugin):
    """Builds a generator/critic pair for data of a given shape."""

    kind = "model"

    def build(self, data_shape: tuple[int, ...]) -> ModelPair:
        raise NotImplementedError


class Metric(Plugin):
    """An evaluation metric computed on generator samples (CPU tensor ``(n, *shape)``)."""

    kind = "metric"
    direction: ClassVar[Literal["minimize", "maximize"]] = "minimize"

    def applies_to(self, dataset: Dataset) -> bool:
        return True

    def compute(self, samples: Tensor, dataset: Dataset) -> float:
        raise NotImplementedError


BASE_CLASSES: dict[Kind, type[Plugin]] = {
    "loss": Loss,
    "constraint": Constraint,
    "optimizer": Optimizer,
    "dataset": Dataset,
    "model": Model,
    "metric": Metric,
}
