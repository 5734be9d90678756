"""The whole hook contract of gan-pipeline, in one file.

A plugin is a module (or object) with functions marked ``@pipeline.hookimpl``, found
through the ``gan_pipeline`` entry-point group. Each hook receives a ``register``
callback and calls it once per plugin class it provides::

    from pipeline import hookimpl
    from pipeline.types import Loss

    class MyLoss(Loss):
        name = "my_loss"
        ...

    @hookimpl
    def register_losses(register):
        register(MyLoss)

The host owns the names: two classes registering one name is an error that names both.
The base classes each kind must subclass, and which hook registers which kind, are in
:mod:`pipeline.types` (``KINDS``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:  # `import pipeline` (the CLI's --help) stays free of pydantic and torch
    from pipeline.types import Constraint, Dataset, Loss, Metric, Model, Optimizer

PROJECT = "gan_pipeline"
#: the entry-point group third-party packages (and the built-ins) register under
ENTRY_POINT_GROUP = "gan_pipeline"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_losses(register: Callable[[type[Loss]], None]) -> None:
    """Register adversarial losses (subclasses of :class:`pipeline.types.Loss`)."""


@hookspec
def register_constraints(register: Callable[[type[Constraint]], None]) -> None:
    """Register critic constraints (subclasses of :class:`pipeline.types.Constraint`)."""


@hookspec
def register_optimizers(register: Callable[[type[Optimizer]], None]) -> None:
    """Register optimizers (subclasses of :class:`pipeline.types.Optimizer`)."""


@hookspec
def register_datasets(register: Callable[[type[Dataset]], None]) -> None:
    """Register datasets (subclasses of :class:`pipeline.types.Dataset`)."""


@hookspec
def register_models(register: Callable[[type[Model]], None]) -> None:
    """Register generator/critic pairs (subclasses of :class:`pipeline.types.Model`)."""


@hookspec
def register_metrics(register: Callable[[type[Metric]], None]) -> None:
    """Register evaluation metrics (subclasses of :class:`pipeline.types.Metric`)."""
