"""One generator step with its critic steps, written once for one net and for K stacked nets.

:func:`gan_step` is the step: n_critic critic steps (real batch, noise, critic loss, the
constraint's penalty, backward, optimizer step, the constraint's after-step), then the
generator step (noise, scores, generator loss, backward, optimizer step). What differs
between a single training (:class:`pipeline.training.trainer.Trainer`) and a population
(:class:`pipeline.tuning.population.trainer.PopulationTrainer`) is behind
:class:`StepNets`: how a batch is drawn, how a loss is reduced and stepped (one value, or
K values of which only the masked members step), and how a value of the rounds is kept.
A change to the order of draws or updates is made here, so neither loop can miss it.

The values stay device tensors (no ``.item()``, no sync): ``()`` for one net, ``(K,)``
for a population.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from torch.optim.swa_utils import AveragedModel

from pipeline.types import Constraint, Loss

#: which members take part in a round: None for one net (it always does)
Taking = Sequence[bool] | None


class StepNets(Protocol):
    """What :func:`gan_step` needs of the nets it trains (one pair, or K stacked pairs)."""

    generator: nn.Module
    critic: nn.Module
    loss: Loss

    def zeros(self) -> Tensor:
        """A zero value: ``()`` for one net, ``(K,)`` for a population."""
        ...

    def critic_rounds(self) -> list[Taking]:
        """The critic steps of this generator step: who takes part in each."""
        ...

    def select(self, taking: Taking) -> None:
        """Only ``taking`` members run (and draw) from here on; None: all active ones."""
        ...

    def real(self, taking: Taking) -> Tensor:
        """A real batch of each member taking part (from its data generator)."""
        ...

    def noise(self, taking: Taking) -> Tensor:
        """A noise batch of each member taking part (from its training generator)."""
        ...

    def score(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        """The critic's scores of ``real`` and ``fake`` (one pass where it may)."""
        ...

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor: ...

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor: ...

    def penalty(self, real: Tensor, fake: Tensor) -> Tensor | None:
        """The constraint's penalty (None: it adds none)."""
        ...

    def critic_update(self, total: Tensor) -> None:
        """Back-propagate ``total`` and step the critic's optimizer (taking members only)."""
        ...

    def after_critic_step(self) -> None:
        """The constraint's action after a critic step (weight clipping)."""
        ...

    def generator_update(self, g_loss: Tensor) -> None:
        """Back-propagate ``g_loss`` and step the generator's optimizer (and its average)."""
        ...

    def keep(self, new: Tensor, old: Tensor) -> Tensor:
        """A value of this round for the members taking part, ``old`` for the others."""
        ...

    def grad_norm(self, net: nn.Module) -> Tensor:
        """The norm of ``net``'s gradients (per member)."""
        ...

    def diagnostics(self) -> dict[str, Tensor]:
        """The constraint's diagnostics of the critic."""
        ...


@dataclass
class StepValues:
    """One step's values, detached device tensors: the last critic step's loss and
    penalty (per member), the generator's loss and the Wasserstein estimate (0 where the
    loss makes none), with the gradient norms and diagnostics of a measured step."""

    critic_loss: Tensor
    generator_loss: Tensor
    penalty: Tensor
    wasserstein_estimate: Tensor
    extra: dict[str, Tensor]

    def row(self) -> list[Tensor]:
        """The values in the order of :data:`pipeline.training.step_values.STEP_KEYS`."""
        return [self.critic_loss, self.generator_loss, self.penalty, self.wasserstein_estimate]


def gan_step(nets: StepNets, measure: bool) -> StepValues:
    """One generator step with its critic steps (see the module docstring)."""
    G, D, loss = nets.generator, nets.critic, nets.loss
    zero = nets.zeros()
    d_loss = penalty = grad_norm_d = zero
    D.requires_grad_(True)
    for taking in nets.critic_rounds():
        nets.select(taking)
        real = nets.real(taking)
        with torch.no_grad():
            fake = G(nets.noise(taking))
        real_scores, fake_scores = nets.score(real, fake)
        d = nets.critic_loss(real_scores, fake_scores)
        pen = nets.penalty(real, fake)
        total = d if pen is None else d + pen
        nets.critic_update(total)
        nets.after_critic_step()
        d_loss = nets.keep(d.detach(), d_loss)
        penalty = nets.keep(zero if pen is None else pen.detach(), penalty)
        if measure:
            grad_norm_d = nets.keep(nets.grad_norm(D), grad_norm_d)
    extra: dict[str, Tensor] = {}
    if measure:
        extra["grad_norm/critic"] = grad_norm_d
    # generator step: the critic's weights need no gradients here
    D.requires_grad_(False)
    nets.select(None)
    fake = G(nets.noise(None))
    if loss.needs_real_scores:
        real_scores, fake_scores = nets.score(nets.real(None), fake)
        g_loss = nets.generator_loss(fake_scores, real_scores)
    else:
        g_loss = nets.generator_loss(D(fake), None)
    nets.generator_update(g_loss)
    if measure:
        extra["grad_norm/generator"] = nets.grad_norm(G)
        extra.update(nets.diagnostics())
    w_est = -d_loss if loss.estimates_wasserstein else zero
    return StepValues(d_loss, g_loss.detach(), penalty, w_est, extra)


@dataclass
class SingleNets:
    """One generator and one critic: :class:`StepNets` for a single training."""

    generator: nn.Module
    critic: nn.Module
    loss: Loss
    constraint: Constraint
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    #: the generator's moving average (``train.g_ema``), updated after each generator step
    ema: AveragedModel | None
    #: the critic scores real and fake batches in one pass
    single_pass: bool
    device: torch.device
    #: critic steps of this generator step (n_critic, or the warm-up count)
    rounds: int
    draw_real: Callable[[], Tensor]
    draw_noise: Callable[[], Tensor]

    def zeros(self) -> Tensor:
        return torch.zeros((), device=self.device)

    def critic_rounds(self) -> list[Taking]:
        return [None] * self.rounds

    def select(self, taking: Taking) -> None:
        pass

    def real(self, taking: Taking) -> Tensor:
        return self.draw_real()

    def noise(self, taking: Taking) -> Tensor:
        return self.draw_noise()

    def score(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        if self.single_pass:
            scores = self.critic(torch.cat([real, fake]))
            # real and fake batches are equal: the first half of the scores is the real
            # one's (a packing critic, PacGAN's m, gives n/m scores per batch)
            half = scores.shape[0] // 2
            return scores[:half], scores[half:]
        return self.critic(real), self.critic(fake)

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return self.loss.critic_loss(real_scores, fake_scores)

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        return self.loss.generator_loss(fake_scores, real_scores)

    def penalty(self, real: Tensor, fake: Tensor) -> Tensor | None:
        return self.constraint.penalty(self.critic, real, fake)

    def critic_update(self, total: Tensor) -> None:
        self.opt_d.zero_grad(set_to_none=True)
        total.backward()
        self.opt_d.step()

    def after_critic_step(self) -> None:
        self.constraint.after_critic_step(self.critic)

    def generator_update(self, g_loss: Tensor) -> None:
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        if self.ema is not None:
            self.ema.update_parameters(self.generator)

    def keep(self, new: Tensor, old: Tensor) -> Tensor:
        return new

    def grad_norm(self, net: nn.Module) -> Tensor:
        """The 2-norm of all gradients of ``net`` together (0 when there are none)."""
        return nn.utils.get_total_norm([p.grad for p in net.parameters() if p.grad is not None])

    def diagnostics(self) -> dict[str, Tensor]:
        return self.constraint.diagnostics(self.critic)
