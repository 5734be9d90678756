"""No constraint on the critic: the original GAN setting.

Goodfellow et al. 2014, "Generative Adversarial Nets", trains the discriminator without
any Lipschitz constraint; this plugin keeps every hook of
:class:`pipeline.types.Constraint` at its do-nothing default.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from pipeline import hookimpl
from pipeline.types import Constraint, PopulationConstraint, Settings


class NoConstraint(Constraint):
    name = "none"
    description = "no constraint on the critic (Goodfellow 2014)"

    @classmethod
    def population_form(cls, settings: Sequence[Settings]) -> PopulationConstraint:
        return PopulationNoConstraint(settings)


class PopulationNoConstraint(PopulationConstraint):
    """No constraint on K stacked critics: every hook keeps its do-nothing default."""


@hookimpl
def register_constraints(register: Callable[[type[Constraint]], None]) -> None:
    register(NoConstraint)
