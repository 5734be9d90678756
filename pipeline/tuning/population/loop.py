"""The population's loop: steps, per-member logging windows, evaluations, ends.

:class:`PopulationLoop` drives a :class:`~pipeline.tuning.population.trainer.PopulationTrainer`
one step at a time and tells a :class:`MemberHooks` what each member would have
recorded in its single training (``Trainer.run``): the per-step values of each
``log_every`` window (moved to the host once per window, as ``Trainer._flush`` does),
each evaluation's metrics and samples, and its end (finished, failed on a non-finite
value, or stopped by a hook: a pruned trial). Values are checked per member: one member
going non-finite fails that member only.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from pipeline.errors import NonFiniteLossError
from pipeline.training.step_values import STEP_KEYS, check_finite
from pipeline.training.trainer import TrainResult
from pipeline.tuning.population.trainer import Member, PopulationTrainer

__all__ = ["MemberHooks", "MemberStopped", "PopulationLoop"]


class MemberStopped(Exception):
    """Raised by a hook to end a member early (a pruned trial): its slot is freed."""


class MemberHooks:
    """What the loop reports per member; the defaults record nothing."""

    def on_window(
        self, k: int, member: Member, keys: list[str], table: np.ndarray, steps: list[int]
    ) -> None:
        """A ``log_every`` window of per-step values (``table[:, i]`` is ``keys[i]``)."""

    def on_extras(self, k: int, member: Member, step: int, values: dict[str, float]) -> None:
        """Gradient norms and constraint diagnostics of a log step."""

    def on_eval(self, k: int, member: Member, metrics: dict[str, float], samples: Tensor) -> None:
        """An evaluation; raise :class:`MemberStopped` to end the member here."""

    def on_end(
        self, k: int, member: Member, result: TrainResult | None, error: BaseException | None
    ) -> None:
        """The member finished (``result``), failed or was stopped (``error``)."""


@dataclass
class PopulationLoop:
    trainer: PopulationTrainer
    hooks: MemberHooks = field(default_factory=MemberHooks)
    #: device tables not yet on the host: (values (K, 4), the members they belong to, steps)
    _buffer: list[tuple[Tensor, list[Member | None], list[int]]] = field(default_factory=list)
    _started: dict[int, float] = field(default_factory=dict)

    def step(self) -> list[int]:
        """One step of every active member; returns the slots whose member ended."""
        trainer = self.trainer
        for m in trainer.members:
            if m is not None and id(m) not in self._started:
                self._started[id(m)] = time.perf_counter()
        members = list(trainer.members)
        table, extra, measured = trainer.train_step()
        self._buffer.append((table, members, [m.step if m else -1 for m in members]))
        evaluating = [m is not None and m.evaluates() for m in members]
        ended: list[int] = []
        if not (any(measured) or any(evaluating)):
            return ended
        host = torch.stack([t for t, _, _ in self._buffer]).cpu().numpy()
        extra_host = {key: value.detach().cpu().numpy() for key, value in extra.items()}
        for (_, owners, steps), rows in zip(self._buffer, host, strict=True):
            for k, owner in enumerate(owners):
                if owner is not None:
                    owner.pending.append((steps[k], rows[k]))
        self._buffer = []
        failed: dict[int, BaseException] = {}
        for k, m in enumerate(members):
            if m is not None and measured[k]:
                try:
                    self._window(k, m, {key: float(v[k]) for key, v in extra_host.items()})
                except NonFiniteLossError as exc:
                    failed[k] = exc
        samples = trainer.samples() if any(evaluating) else None
        for k, m in enumerate(members):
            if m is None:
                continue
            error = failed.get(k)
            if error is None and evaluating[k]:
                assert samples is not None
                try:
                    metrics = trainer.evaluate(k, samples[k])
                    m.evaluations.append((m.step, metrics))
                    self.hooks.on_eval(k, m, metrics, samples[k])
                except (NonFiniteLossError, MemberStopped) as exc:
                    error = exc
            if error is not None or m.done:
                self._end(k, m, error)
                ended.append(k)
        return ended

    def _window(self, k: int, m: Member, extras: dict[str, float]) -> None:
        """Move member ``k``'s pending values into its history (``Trainer._flush``)."""
        steps = [s for s, _ in m.pending]
        table = np.stack([row for _, row in m.pending])
        m.pending = []
        check_finite(table, steps)
        active = [i for i, key in enumerate(STEP_KEYS) if m.single.logs(key)]
        keys = [STEP_KEYS[i] for i in active]
        for r, step in enumerate(steps):
            for c in active:
                hist = m.history.setdefault(STEP_KEYS[c], ([], []))
                hist[0].append(step)
                hist[1].append(float(table[r, c]))
        for key, value in extras.items():
            if not math.isfinite(value):
                raise NonFiniteLossError(f"{key} became {value} at generator step {steps[-1]}")
            hist = m.history.setdefault(key, ([], []))
            hist[0].append(steps[-1])
            hist[1].append(value)
        self.hooks.on_window(k, m, keys, table[:, active], steps)
        if extras:
            self.hooks.on_extras(k, m, steps[-1], extras)

    def _end(self, k: int, m: Member, error: BaseException | None) -> None:
        wall = time.perf_counter() - self._started.pop(id(m), time.perf_counter())
        result = None
        if error is None:
            result = TrainResult(
                run_id=None,
                metrics=m.evaluations[-1][1] if m.evaluations else {},
                steps=m.step,
                wall_time_s=wall,
                evaluations=m.evaluations,
                history=m.history,
            )
        self.trainer.clear(k)
        self.hooks.on_end(k, m, result, error)

    def run(self) -> None:
        """Step until every slot is empty (hooks may refill slots in ``on_end``)."""
        while any(m is not None for m in self.trainer.members):
            self.step()
