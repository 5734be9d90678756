"""Public types of the hook contract: the base class of each kind of plugin.

A plugin is a class. It carries its ``name`` (the name experiment files use), a
one-line ``description`` and a ``Settings`` model (pydantic, unknown keys refused)
whose defaults cite the paper they come from. The host validates the settings from
the experiment file and instantiates the class with them: ``Plugin(settings)``.

The base classes are abstract (:mod:`abc`): what a kind requires is an
``@abstractmethod``, so a class that lacks it is refused when it registers. The kinds
themselves are the table :data:`KINDS` at the end: name, base class, and the hook of
:mod:`pipeline.hookspecs` that registers them.

Plugins import only this module and :mod:`pipeline.hookspecs` (through
``pipeline.hookimpl``), never the training loop, the tuner or the CLI. Bad input a
plugin finds (a missing data folder, an unreadable file) is a :class:`ConfigError`
naming the setting, e.g. ``ConfigError("dataset.root", "no folder …")``: the CLI prints
it as one line and exits with status 2.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol, TypeAlias

from pydantic import BaseModel, ConfigDict

from pipeline.errors import ConfigError

if TYPE_CHECKING:  # torch only in annotations: reading an experiment file needs no torch
    import torch
    from torch import Tensor, nn

__all__ = [
    "KINDS",
    "ConfigError",
    "Constraint",
    "Dataset",
    "ImageDataset",
    "Kind",
    "KindSpec",
    "Loss",
    "Metric",
    "Model",
    "ModelPair",
    "Optimizer",
    "Plugin",
    "PopulationConstraint",
    "PopulationOptimizer",
    "Settings",
    "StackedNet",
    "kind_of",
]

#: the name of a kind of plugin: a key of :data:`KINDS`
Kind: TypeAlias = str


class Settings(BaseModel):
    """Base of every plugin's settings: typed fields, unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Plugin(ABC):
    """What every plugin class has: a name, a description and its settings model.

    ``kind`` is set on each base class from :data:`KINDS`.
    """

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

    #: the generator term uses ``real_scores`` (relativistic losses)
    needs_real_scores: ClassVar[bool] = False
    #: ``-critic_loss`` (without penalty) estimates the Wasserstein-1 distance
    estimates_wasserstein: ClassVar[bool] = False

    @abstractmethod
    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor: ...

    @abstractmethod
    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor: ...


class Constraint(Plugin):
    """A constraint on the critic, acting where it belongs.

    - ``wrap_critic``: at build time (spectral normalization);
    - ``penalty``: a term added to the critic loss; sees the critic and both the real
      and the fake batch (gradient penalty, R1, DRAGAN);
    - ``after_critic_step``: after every critic optimizer step (weight clipping);
    - ``diagnostics``: tensors to log as metrics (σ estimates), computed on log steps.

    Never call ``backward()`` or ``step()`` here: the training loop does.

    A constraint that draws random numbers (the gradient penalty's interpolation α) draws
    them from ``self.rng``: the training's own ``torch.Generator`` on its device, set by
    the host before the first step and saved in checkpoints. ``None`` (outside a training)
    means torch's global RNG. Each training owning its generator is what lets trials run
    side by side in threads and still reproduce from their seed.
    """

    #: the critic may score ``cat([real, fake])`` in one pass (False if the
    #: constraint depends on seeing each batch separately)
    allows_single_pass: ClassVar[bool] = True
    #: the training's random generator (set by the host); None: torch's global RNG
    rng: torch.Generator | None = None

    def wrap_critic(self, critic: nn.Module) -> nn.Module:
        return critic

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        return None

    def after_critic_step(self, critic: nn.Module) -> None:
        return None

    def diagnostics(self, critic: nn.Module) -> dict[str, Tensor]:
        return {}

    @classmethod
    def population_form(cls, settings: Sequence[Settings]) -> PopulationConstraint | None:
        """This constraint for K stacked critics (``pipeline tune --population``), one
        ``settings`` per member; None (the default): no population form, refused there."""
        return None


class Optimizer(Plugin):
    """Builds a torch optimizer for the parameters it is given, from its own settings."""

    @abstractmethod
    def build(self, params: Iterable[nn.Parameter]) -> torch.optim.Optimizer: ...

    @classmethod
    def population_form(
        cls, params: Sequence[Tensor], settings: Sequence[Settings]
    ) -> PopulationOptimizer | None:
        """K optimizers over stacked ``params`` (dim 0: the member), one ``settings`` per
        member; None (the default): no population form, refused in population mode."""
        return None


# -- population mode (``pipeline tune --population K``) ----------------------------------
#
# K trials of one structure train as one model: every weight is stacked, dim 0 the member
# (a Linear weight is ``(K, out, in)``), every batch is ``(K, n, ...)``. Losses need no
# form (pure functions of scores, vmapped over the member). A constraint or an optimizer
# offers a form by its ``population_form`` classmethod; ``per_member`` names the settings
# that may differ between members (others must match, or the trials train apart).


class StackedNet(Protocol):
    """The K stacked nets a population form sees (:mod:`pipeline.tuning.population.stacked`)."""

    #: the layers with weights, in order: each has ``weight`` ``(K, out, in)``, ``bias``
    #: ``(K, out)``, ``path`` (the module path in one member's net, e.g. ``net.0``) and
    #: ``weight_fn`` (None, or a function of the weight used in its place: spectral norm)
    layers: list[Any]
    #: members taking part in the current step, bool ``(K,)``: state may change only there
    mask: Tensor
    #: the same on the host (no device sync to read it): ``taking[k] == bool(mask[k])``
    taking: list[bool]

    def set_mask(self, taking: list[bool]) -> None:
        """Set ``taking`` and ``mask`` together."""

    def __call__(self, x: Tensor) -> Tensor: ...

    def parameters(self) -> list[Tensor]: ...


class PopulationConstraint:
    """A constraint on K stacked critics: :class:`Constraint`'s hooks with a member axis.

    ``penalty`` returns ``(K,)`` (None: no penalty), drawing member k's random numbers
    from ``rngs[k]`` only where ``critic.mask[k]``, in the order its single form does, so
    that member k reproduces the single training of its seed.
    """

    per_member: ClassVar[tuple[str, ...]] = ()
    allows_single_pass: ClassVar[bool] = True

    def __init__(self, settings: Sequence[Settings]) -> None:
        self.settings = list(settings)

    def set_member(self, k: int, settings: Settings, critic: nn.Module) -> None:
        """Slot ``k`` takes a new member: its settings and its freshly built critic."""
        self.settings[k] = settings

    def wrap_critic(self, critic: StackedNet) -> None:
        return None

    def penalty(
        self, critic: StackedNet, real: Tensor, fake: Tensor, rngs: Sequence[torch.Generator]
    ) -> Tensor | None:
        return None

    def after_critic_step(self, critic: StackedNet) -> None:
        return None

    def diagnostics(self, critic: StackedNet) -> dict[str, Tensor]:
        return {}

    def store_member(self, k: int, critic: nn.Module) -> None:
        """Write member ``k``'s state into its single ``critic`` (its checkpoint)."""
        return None


class PopulationOptimizer(ABC):
    """K optimizers over stacked parameters: ``step`` updates only where ``mask`` is
    True (parameters and state), from the parameters' ``.grad``."""

    per_member: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: Sequence[Tensor], settings: Sequence[Settings]) -> None:
        self.params = list(params)
        self.settings = list(settings)

    @abstractmethod
    def step(self, mask: Tensor) -> None: ...

    @abstractmethod
    def set_member(self, k: int, settings: Settings) -> None:
        """Slot ``k`` takes a new member: its settings, and a fresh state."""

    def member_state(self, k: int, index: int) -> dict[str, Tensor]:
        """Member ``k``'s state of ``params[index]`` as its torch optimizer keeps it (the
        member's checkpoint); empty (the default): a resumed member starts it afresh."""
        return {}

    def column(self, values: Iterable[float], dtype: torch.dtype | None = None) -> Tensor:
        """One setting of every member as a ``(K,)`` tensor on the parameters' device (in
        their dtype unless ``dtype`` says otherwise)."""
        import torch

        first = self.params[0]
        return torch.tensor(list(values), device=first.device, dtype=dtype or first.dtype)


class Dataset(Plugin):
    """A source of real samples.

    ``sample(n, generator)`` returns ``n`` samples of shape ``(n, *shape)`` on the CPU,
    drawn with ``generator`` so that a seed reproduces them. 2-D mixtures also give
    their mode ``centers`` and per-mode ``std`` (the VEEGAN/PacGAN metrics need them).
    Images are scaled to [-1, 1].
    """

    #: shape of one sample, e.g. ``(2,)`` or ``(1, 8, 8)``
    shape: tuple[int, ...] = (2,)
    #: mode centres, ``(n_modes, 2)``, for mixtures; None otherwise
    centers: Tensor | None = None
    #: standard deviation of each mode (the 3σ high-quality threshold uses it)
    std: float | None = None

    @property
    def is_image(self) -> bool:
        return len(self.shape) == 3

    @abstractmethod
    def sample(self, n: int, generator: torch.Generator) -> Tensor: ...


class ImageDataset(Dataset):
    """A dataset of images, ``shape = (channels, height, width)``, scaled to [-1, 1].

    The classifier-feature metrics (``classifier_fd``, ``precision``, ``recall``,
    ``class_coverage``, ``class_kl``, ``classifier_accuracy``) apply to an image dataset
    with ``labels`` of at least two classes: they train a small classifier on
    ``train_images``/``train_labels`` and check it on ``heldout_images``/
    ``heldout_labels``. A dataset without its own split leaves those None, and the metrics
    split ``images``/``labels`` themselves. Set every attribute in ``__init__``.
    """

    #: every image, ``(n, *shape)``: what ``sample`` draws from
    images: Tensor
    #: the class of each image, int64 ``(n,)``; None: unlabelled (no classifier metrics)
    labels: Tensor | None = None
    #: the classifier's training split; None: a seeded part of ``images``/``labels``
    train_images: Tensor | None = None
    train_labels: Tensor | None = None
    #: the classifier's held-out split; None: the rest of ``images``/``labels``
    heldout_images: Tensor | None = None
    heldout_labels: Tensor | None = None


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

    @abstractmethod
    def build(self, data_shape: tuple[int, ...]) -> ModelPair: ...


class Metric(Plugin):
    """An evaluation metric computed on generator samples (CPU tensor ``(n, *shape)``)."""

    direction: ClassVar[Literal["minimize", "maximize"]] = "minimize"

    def applies_to(self, dataset: Dataset) -> bool:
        return True

    @abstractmethod
    def compute(self, samples: Tensor, dataset: Dataset) -> float: ...


@dataclass(frozen=True)
class KindSpec:
    """A kind of plugin: its name, the base class its plugins subclass, and the hook of
    :mod:`pipeline.hookspecs` that registers them."""

    name: Kind
    base: type[Plugin]
    hook: str


#: Every kind of plugin, declared once; the registry, the test kit and ``pipeline plugins``
#: read it from here.
KINDS: dict[Kind, KindSpec] = {
    spec.name: spec
    for spec in (
        KindSpec("loss", Loss, "register_losses"),
        KindSpec("constraint", Constraint, "register_constraints"),
        KindSpec("optimizer", Optimizer, "register_optimizers"),
        KindSpec("dataset", Dataset, "register_datasets"),
        KindSpec("model", Model, "register_models"),
        KindSpec("metric", Metric, "register_metrics"),
    )
}
for _spec in KINDS.values():
    _spec.base.kind = _spec.name


def kind_of(cls: object) -> KindSpec | None:
    """The kind of a plugin class (the first base class of :data:`KINDS` it subclasses)."""
    if not isinstance(cls, type):
        return None
    return next((spec for spec in KINDS.values() if issubclass(cls, spec.base)), None)
