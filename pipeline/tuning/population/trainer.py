"""One step of K members at once, mirroring :class:`pipeline.training.trainer.Trainer`,
draw for draw.

Each member is built by a :class:`~pipeline.training.trainer.Trainer` of its own experiment (the
same seeding, weight initialisation, spectral norm ``u``/``v``, data and training
``torch.Generator``, metrics and evaluation noise as a single training of that seed);
its nets are then copied into one slot of the stacks. A step of the population is
:func:`pipeline.training.step.gan_step`, the step of a single training, with this class as
its :class:`~pipeline.training.step.StepNets`: the same order of random draws, per critic
step the real batch (member's data generator), the noise, the penalty's α (member's
training generator); then the generator step's noise (and real batch for relativistic
losses). The members' draws go through their builds' public ``real_batch`` and
``noise_batch``. Members with fewer critic steps (``n_critic``, warm-up)
are masked out of the extra ones: they draw nothing, and their weights, optimizer state
and spectral-norm vectors stay as they are. Slots may be at different steps (a slot takes
a new member when one ends: :meth:`PopulationTrainer.set_member`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.errors import ConfigError, NonFiniteLossError
from pipeline.experiment.config import Experiment
from pipeline.training.device import resolve_device
from pipeline.training.step import Taking, gan_step
from pipeline.training.step_values import STEP_KEYS
from pipeline.training.trainer import Trainer
from pipeline.tuning.population.forms import (
    check_population_forms,
    constraint_form,
    set_constraint_member,
    structure_key,
    vmapped_loss,
)
from pipeline.tuning.population.stacked import StackedMLP, stack_nets

__all__ = ["Member", "PopulationTrainer"]


@dataclass
class Member:
    """One slot's trial: its experiment and the single-training build it came from."""

    exp: Experiment
    single: Trainer
    step: int = 0
    #: per-step values not yet moved into ``history``: (step, row of STEP_KEYS)
    pending: list[tuple[int, np.ndarray]] = field(default_factory=list)
    history: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)
    evaluations: list[tuple[int, dict[str, float]]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.step >= self.exp.train.steps

    def measures(self) -> bool:
        """Whether this member's next step is a log step (``Trainer.run``'s rule)."""
        cfg = self.exp.train
        return (self.step + 1) % cfg.log_every == 0 or self.step + 1 == cfg.steps

    def evaluates(self) -> bool:
        """Whether the step just taken is an evaluation step (``Trainer.run``'s rule)."""
        cfg = self.exp.train
        return self.step % cfg.eval_every == 0 or self.step == cfg.steps


class PopulationTrainer:
    """K slots of one structure trained as one stacked model (see the module docstring)."""

    def __init__(self, experiments: Sequence[Experiment], *, device: str | None = None) -> None:
        if not experiments:
            raise ConfigError("--population", "a population needs at least one member")
        for exp in experiments:
            check_population_forms(exp)
        self.key = structure_key(experiments[0])
        self.device = resolve_device(device or experiments[0].train.device)
        self._tmp = tempfile.TemporaryDirectory(prefix="gan-population-")
        builds = [self._single(exp) for exp in experiments]
        first = builds[0]
        self.K = len(experiments)
        self.batch_size = experiments[0].train.batch_size
        self.noise_dim = first.noise_dim
        self.dataset = first.dataset
        self.loss = first.loss
        self.single_pass = first.single_pass
        self.G: StackedMLP = stack_nets([b.generator for b in builds], self.device)
        self.D: StackedMLP = stack_nets([b.critic for b in builds], self.device)
        self.constraint = constraint_form(experiments)
        self.constraint.wrap_critic(self.D)
        g_choice = experiments[0].plugins["optimizer.generator"]
        d_choice = experiments[0].plugins["optimizer.critic"]
        self.opt_g = g_choice.info.cls.population_form(
            self.G.parameters(), [e.plugins["optimizer.generator"].settings for e in experiments]
        )
        self.opt_d = d_choice.info.cls.population_form(
            self.D.parameters(), [e.plugins["optimizer.critic"].settings for e in experiments]
        )
        self.critic_term, self.generator_term = vmapped_loss(self.loss, (self.K, self.batch_size))
        self.eval_noise = torch.stack([b.eval_noise for b in builds]).to(self.device)
        self.members: list[Member | None] = [None] * self.K
        for k, (exp, build) in enumerate(zip(experiments, builds, strict=True)):
            self._place(k, exp, build)

    # -- slots --------------------------------------------------------------------------
    def _single(self, exp: Experiment) -> Trainer:
        return Trainer(
            exp, device=str(self.device), workdir=Path(self._tmp.name), progress=False,
            write_artifacts=False, trial=True,
        )  # fmt: skip

    def set_member(self, k: int, exp: Experiment) -> Member:
        """Slot ``k`` takes a new member (``exp`` must share the population's structure)."""
        check_population_forms(exp)
        if structure_key(exp) != self.key:
            raise ConfigError("--population", "a member of another structure cannot join")
        return self._place(k, exp, self._single(exp))

    def _place(self, k: int, exp: Experiment, build: Trainer) -> Member:
        self.G.load_member(k, build.generator)
        self.D.load_member(k, build.critic)
        set_constraint_member(self.constraint, k, exp, build.critic)
        self.opt_g.set_member(k, exp.plugins["optimizer.generator"].settings)
        self.opt_d.set_member(k, exp.plugins["optimizer.critic"].settings)
        self.eval_noise[k].copy_(build.eval_noise)
        member = Member(exp, build)
        self.members[k] = member
        return member

    def clear(self, k: int) -> None:
        """Slot ``k`` idles (masked out of every step) until :meth:`set_member`."""
        self.members[k] = None

    # -- one step of every active member: StepNets for gan_step -------------------------
    @property
    def generator(self) -> StackedMLP:
        return self.G

    @property
    def critic(self) -> StackedMLP:
        return self.D

    @property
    def active(self) -> list[bool]:
        """Which slots hold a member."""
        return [m is not None for m in self.members]

    def zeros(self) -> Tensor:
        return torch.zeros(self.K, device=self.device)

    def critic_rounds(self) -> list[Taking]:
        counts = [m.single.critic_steps(m.step) if m is not None else 0 for m in self.members]
        return [[c > i for c in counts] for i in range(max(counts, default=0))]

    def select(self, taking: Taking) -> None:
        self.D.set_mask(self.active if taking is None else taking)

    def real(self, taking: Taking) -> Tensor:
        shape = (self.batch_size, *self.dataset.shape)
        parts = [
            m.single.real_batch() if take and m is not None else torch.zeros(shape)
            for m, take in zip(self.members, taking or self.active, strict=True)
        ]
        return torch.stack(parts).to(self.device, non_blocking=True)

    def noise(self, taking: Taking) -> Tensor:
        shape = (self.batch_size, self.noise_dim)
        parts = [
            m.single.noise_batch()
            if take and m is not None
            else torch.zeros(shape, device=self.device)
            for m, take in zip(self.members, taking or self.active, strict=True)
        ]
        return torch.stack(parts)

    def score(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        if self.single_pass:
            scores = self.D(torch.cat([real, fake], dim=1))
            return scores[:, : real.shape[1]], scores[:, real.shape[1] :]
        return self.D(real), self.D(fake)

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return self.critic_term(real_scores, fake_scores)

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        if real_scores is None:
            return self.generator_term(fake_scores)
        return self.generator_term(fake_scores, real_scores)

    @property
    def rngs(self) -> list[torch.Generator]:
        return [m.single.train_rng if m is not None else None for m in self.members]

    def penalty(self, real: Tensor, fake: Tensor) -> Tensor | None:
        return self.constraint.penalty(self.D, real, fake, self.rngs)

    def critic_update(self, total: Tensor) -> None:
        for p in self.D.parameters():
            p.grad = None
        torch.where(self.D.mask, total, torch.zeros_like(total)).sum().backward()
        self.opt_d.step(self.D.mask)

    def after_critic_step(self) -> None:
        self.constraint.after_critic_step(self.D)

    def generator_update(self, g_loss: Tensor) -> None:
        for p in self.G.parameters():
            p.grad = None
        torch.where(self.D.mask, g_loss, torch.zeros_like(g_loss)).sum().backward()
        self.opt_g.step(self.D.mask)

    def keep(self, new: Tensor, old: Tensor) -> Tensor:
        return torch.where(self.D.mask, new, old)

    def grad_norm(self, net: nn.Module) -> Tensor:
        """Per member, the norm of the per-parameter gradient norms."""
        norms = [p.grad.flatten(1).norm(dim=1) for p in net.parameters() if p.grad is not None]
        return torch.linalg.vector_norm(torch.stack(norms), dim=0)

    def diagnostics(self) -> dict[str, Tensor]:
        return self.constraint.diagnostics(self.D)

    def train_step(self) -> tuple[Tensor, dict[str, Tensor], list[bool]]:
        """One generator step of every active member (:func:`pipeline.training.step.gan_step`):
        ``(K, len(STEP_KEYS))`` values, diagnostics ``(K,)`` each (when a member measures),
        and which members measured."""
        members = self.members
        measure = [m is not None and m.measures() for m in members]
        values = gan_step(self, any(measure))
        for m in members:
            if m is not None:
                m.step += 1
                m.single.step = m.step
        return torch.stack(values.row(), dim=1), values.extra, measure

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def samples(self, chunk: int = 4096) -> Tensor:
        """Every slot's samples of its evaluation noise, ``(K, eval_samples, …)`` on CPU."""
        n = self.eval_noise.shape[1]
        parts = [
            self.G(self.eval_noise[:, i : i + chunk]).float().cpu() for i in range(0, n, chunk)
        ]
        return torch.cat(parts, dim=1)

    def evaluate(self, k: int, samples: Tensor) -> dict[str, float]:
        """Member ``k``'s metrics on its samples (``Trainer.evaluate``)."""
        member = self.members[k]
        assert member is not None
        if not torch.isfinite(samples).all():
            raise NonFiniteLossError(f"generator produced non-finite samples at step {member.step}")
        return {
            m.name: float(m.compute(samples, member.single.dataset)) for m in member.single.metrics
        }

    def store_member(self, k: int, member: Member) -> Trainer:
        """Slot ``k``'s trained nets copied back into ``member``'s single build (for its
        checkpoint); the slot still holds them after the member ended (:meth:`clear`)."""
        single = member.single
        self.G.store_member(k, single.generator)
        self.D.store_member(k, single.critic)
        self.constraint.store_member(k, single.critic)
        for form, stacked, optimizer, net in (
            (self.opt_g, self.G, single.opt_g, single.generator),
            (self.opt_d, self.D, single.opt_d, single.critic),
        ):
            for index, param in enumerate(stacked.module_parameters(net)):
                state = form.member_state(k, index)
                if state:
                    optimizer.state[param] = state
        return single

    def close(self) -> None:
        self._tmp.cleanup()


def step_keys() -> tuple[str, ...]:
    return STEP_KEYS
