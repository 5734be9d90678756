"""Several constraints on one critic, acting as one :class:`~pipeline.types.Constraint`.

Kurach et al. 2019 ("A Large-Scale Study on Regularization and Normalization in GANs") and
their compare_gan combine a normalization with a penalty (spectral norm + gradient
penalty is among their best settings). An experiment asks for that with ``constraints:``
(see :mod:`pipeline.experiment.config`); :func:`build_constraint` turns its plugin choices into the
one constraint the training loop uses, so the loop stays the only place that calls
``backward()`` and ``step()``. The members act in the order the file lists them:

- ``wrap_critic``: each wraps the critic the previous one returned;
- ``allows_single_pass``: only if every member allows it;
- ``penalty``: the sum of the members' penalties (None when none gives one), each computed
  on the wrapped critic, so a gradient penalty sees the spectrally normalized critic;
- ``after_critic_step``: each in turn;
- ``diagnostics``: every member's, plus ``penalty/<name>``, the penalty each member added at
  the last critic step (detached device tensors: no host sync here).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pipeline.types import Constraint

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from pipeline.host.choice import PluginChoice

__all__ = ["ConstraintStack", "build_constraint", "has_penalty"]


def _defines_penalty(constraint: Constraint) -> bool:
    return type(constraint).penalty is not Constraint.penalty


def has_penalty(constraint: Constraint) -> bool:
    """Whether ``constraint`` may add a penalty (then the loop logs ``penalty``)."""
    if isinstance(constraint, ConstraintStack):
        return bool(constraint.penalizing)
    return _defines_penalty(constraint)


class ConstraintStack(Constraint):
    """Constraints applied together to one critic, in order (see the module docstring).

    Not a registered plugin: the host builds it from ``constraints:``. Member names must be
    distinct (they key the per-constraint penalties).
    """

    name = "constraints"
    description = "several constraints on one critic, applied in order"

    def __init__(self, members: Sequence[Constraint]) -> None:
        super().__init__()
        names = [m.name for m in members]
        if not names:
            raise ValueError("a constraint stack needs at least one constraint")
        if len(set(names)) != len(names):
            raise ValueError(f"constraint names must be distinct, got {names}")
        self.members: tuple[Constraint, ...] = tuple(members)
        #: the members whose class defines a penalty, in order
        self.penalizing: tuple[Constraint, ...] = tuple(m for m in members if _defines_penalty(m))
        self._last_penalties: dict[str, Tensor] = {}

    @property  # type: ignore[override]  # a ClassVar of single plugins, derived here
    def allows_single_pass(self) -> bool:
        return all(m.allows_single_pass for m in self.members)

    @property  # type: ignore[override]
    def rng(self) -> torch.Generator | None:
        """The training's generator, handed to every member (a penalty draws from it)."""
        return self.members[0].rng if self.members else None

    @rng.setter
    def rng(self, generator: torch.Generator | None) -> None:
        for member in self.members:
            member.rng = generator

    def wrap_critic(self, critic: nn.Module) -> nn.Module:
        for member in self.members:
            critic = member.wrap_critic(critic)
        return critic

    def penalty(self, critic: nn.Module, real: Tensor, fake: Tensor) -> Tensor | None:
        import torch

        total: Tensor | None = None
        for member in self.penalizing:
            term = member.penalty(critic, real, fake)
            if term is None:  # e.g. a gradient penalty of weight 0
                self._last_penalties[member.name] = torch.zeros((), device=real.device)
                continue
            self._last_penalties[member.name] = term.detach()
            total = term if total is None else total + term
        return total

    def after_critic_step(self, critic: nn.Module) -> None:
        for member in self.members:
            member.after_critic_step(critic)

    def diagnostics(self, critic: nn.Module) -> dict[str, Tensor]:
        """Every member's diagnostics (a key two members share gets the later one's name as
        prefix) and ``penalty/<name>`` of each penalizing member's last penalty."""
        out: dict[str, Tensor] = {}
        for member in self.members:
            for key, value in member.diagnostics(critic).items():
                out[f"{member.name}/{key}" if key in out else key] = value
        for name, value in self._last_penalties.items():
            out[f"penalty/{name}"] = value
        return out


def build_constraint(plugins: Mapping[str, PluginChoice]) -> Constraint:
    """The critic's constraint from an experiment's plugin choices: the ``constraint``
    plugin itself, or a :class:`ConstraintStack` of the ``constraints.<name>`` ones."""
    if "constraint" in plugins:
        return plugins["constraint"].instantiate()
    members = [c.instantiate() for s, c in plugins.items() if s.startswith("constraints.")]
    if not members:
        raise ValueError("the experiment has neither 'constraint' nor 'constraints'")
    return ConstraintStack(members)
