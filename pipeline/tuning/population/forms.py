"""Which trials can share one stack, and each plugin's population form.

Members of one population share a *structure*: every setting except those a population
form declares ``per_member`` (plus the training's per-member values
:data:`TRAIN_PER_MEMBER`). A plugin kind without a population form is refused by
:func:`check_population_forms` with a :class:`~pipeline.errors.ConfigError` naming the
plugin and its kind; losses need no form but must vectorise under ``torch.func.vmap``
(:func:`vmapped_loss` checks that on a batch and refuses a loss that does not).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from pipeline.errors import ConfigError
from pipeline.types import Constraint, Loss, Optimizer, PopulationConstraint

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

    from pipeline.experiment.config import Experiment
    from pipeline.types import StackedNet

__all__ = [
    "TRAIN_PER_MEMBER",
    "PopulationConstraintStack",
    "check_population_forms",
    "constraint_form",
    "set_constraint_member",
    "structure_key",
    "vmapped_loss",
]

#: train settings each member has its own of (its own step counter, seed and cadence)
TRAIN_PER_MEMBER = (
    "seed",
    "n_critic",
    "n_critic_warmup",
    "steps",
    "eval_every",
    "log_every",
    "checkpoint_every",
)


def _constraint_sections(exp: Experiment) -> list[str]:
    return [s for s in exp.plugins if s == "constraint" or s.startswith("constraints.")]


def _form_of(choice: Any) -> Any:
    """The population form of a constraint or optimizer choice (None: it has none)."""
    cls = choice.info.cls
    if issubclass(cls, Constraint):
        return cls.population_form([choice.settings])
    import torch

    return cls.population_form([torch.zeros(1)], [choice.settings])


def _form_sections(exp: Experiment) -> list[str]:
    return [
        section
        for section, choice in exp.plugins.items()
        if isinstance(choice.info.cls, type) and issubclass(choice.info.cls, Constraint | Optimizer)
    ]


def check_population_forms(exp: Experiment) -> None:
    """Refuse an experiment whose constraint(s) or optimizers have no population form, or
    whose model has no stacked form, naming the plugin and its kind."""
    for section in _form_sections(exp):
        choice = exp.plugins[section]
        if _form_of(choice) is None:
            kind = "constraint" if issubclass(choice.info.cls, Constraint) else "optimizer"
            raise ConfigError(
                section,
                f"the {kind} plugin {choice.info.name!r} has no population form, so it "
                f"cannot train in --population mode (see docs/writing-plugins.md, "
                f"'Population forms'); run without --population",
            )
    model = exp.plugins["model"]
    if model.info.name != "mlp":
        raise ConfigError(
            "model",
            f"the model plugin {model.info.name!r} has no population form "
            f"(--population stacks the mlp model's nets only); run without --population",
        )
    if getattr(model.settings, "g_batch_norm", False):
        raise ConfigError(
            "model.g_batch_norm", "batch norm has no population form; run without --population"
        )
    if getattr(model.settings, "pack", 1) > 1:
        raise ConfigError(
            "model.pack", "PacGAN packing has no population form; run without --population"
        )
    if exp.train.g_ema > 0:
        raise ConfigError(
            "train.g_ema", "the generator average has no population form; run without --population"
        )
    if exp.train.lr_decay != "none":
        raise ConfigError(
            "train.lr_decay",
            "the learning-rate decay has no population form; run without --population",
        )


def structure_key(exp: Experiment) -> str:
    """What members of one population must share: every resolved setting except the
    per-member ones; the plugin names included (a plugin choice changes structure)."""
    import json

    from pipeline.experiment.config import flatten

    per_member = {f"train.{name}" for name in TRAIN_PER_MEMBER}
    for section in _form_sections(exp):
        form = _form_of(exp.plugins[section])
        fields = form.per_member if form is not None else ()
        per_member |= {f"{section}.{name}" for name in fields}
    flat = flatten({k: v for k, v in exp.resolved.items() if k != "tune"})
    shared = {k: v for k, v in flat.items() if k not in per_member}
    return json.dumps(shared, sort_keys=True, default=str)


def constraint_form(exps: Sequence[Experiment]) -> PopulationConstraint:
    """The population form of the members' constraint (or constraint stack)."""
    sections = _constraint_sections(exps[0])
    forms: list[tuple[str, PopulationConstraint]] = []
    for section in sections:
        choice = exps[0].plugins[section]
        form = choice.info.cls.population_form([e.plugins[section].settings for e in exps])
        if form is None:  # check_population_forms refused it already; keep the promise
            raise ConfigError(section, f"{choice.info.name!r} has no population form")
        forms.append((choice.info.name, form))
    if sections == ["constraint"]:
        return forms[0][1]
    return PopulationConstraintStack(forms, sections)


def set_constraint_member(
    form: PopulationConstraint, k: int, exp: Experiment, critic: nn.Module
) -> None:
    """Slot ``k`` of ``form`` takes member ``exp`` with its freshly built ``critic``."""
    if isinstance(form, PopulationConstraintStack):
        form.set_member(k, exp, critic)
    else:
        form.set_member(k, exp.plugins["constraint"].settings, critic)


class PopulationConstraintStack(PopulationConstraint):
    """:class:`~pipeline.training.constraints.ConstraintStack` for K stacked critics: members
    wrap in order, penalties are summed (each logged as ``penalty/<name>``), after-steps
    run in order, single pass only if all allow."""

    def __init__(self, forms: list[tuple[str, PopulationConstraint]], sections: list[str]):
        super().__init__([])
        self.forms = forms
        self.sections = sections
        self._last: dict[str, Tensor] = {}

    @property  # type: ignore[override]
    def allows_single_pass(self) -> bool:
        return all(form.allows_single_pass for _, form in self.forms)

    def set_member(self, k: int, settings: Any, critic: nn.Module) -> None:
        # settings: the member's Experiment (each form takes its own section's)
        for section, (_, form) in zip(self.sections, self.forms, strict=True):
            form.set_member(k, settings.plugins[section].settings, critic)

    def wrap_critic(self, critic: StackedNet) -> None:
        for _, form in self.forms:
            form.wrap_critic(critic)

    def penalty(
        self, critic: StackedNet, real: Tensor, fake: Tensor, rngs: Sequence[torch.Generator]
    ) -> Tensor | None:
        import torch

        total: Tensor | None = None
        for name, form in self.forms:
            if type(form).penalty is PopulationConstraint.penalty:
                continue
            term = form.penalty(critic, real, fake, rngs)
            # each member's value of its own last critic step (masked-out ones keep theirs)
            now = torch.zeros(real.shape[0], device=real.device) if term is None else term.detach()
            last = self._last.get(name, torch.zeros_like(now))
            self._last[name] = torch.where(critic.mask, now, last)
            if term is not None:
                total = term if total is None else total + term
        return total

    def store_member(self, k: int, critic: nn.Module) -> None:
        for _, form in self.forms:
            form.store_member(k, critic)

    def after_critic_step(self, critic: StackedNet) -> None:
        for _, form in self.forms:
            form.after_critic_step(critic)

    def diagnostics(self, critic: StackedNet) -> dict[str, Tensor]:
        out: dict[str, Tensor] = {}
        for name, form in self.forms:
            for key, value in form.diagnostics(critic).items():
                out[f"{name}/{key}" if key in out else key] = value
        for name, value in self._last.items():
            out[f"penalty/{name}"] = value
        return out


def vmapped_loss(loss: Loss, score_shape: tuple[int, int]) -> tuple[Callable, Callable]:
    """``loss``'s critic and generator terms over a member axis (``torch.func.vmap``),
    checked once against a loop over members; a loss that does not vectorise is refused
    naming it (a :class:`ConfigError` on ``loss``)."""
    import torch
    from torch.func import vmap

    def critic_term(real: Tensor, fake: Tensor) -> Tensor:
        return loss.critic_loss(real, fake)

    def generator_term(fake: Tensor, real: Tensor | None) -> Tensor:
        return loss.generator_loss(fake, real)

    critic = vmap(critic_term)
    if loss.needs_real_scores:
        generator = vmap(generator_term)
    else:
        generator = vmap(lambda fake: loss.generator_loss(fake, None))
    probe = torch.Generator().manual_seed(0)
    real = torch.randn(score_shape, generator=probe)
    fake = torch.randn(score_shape, generator=probe)
    try:
        got_d = critic(real, fake)
        got_g = generator(fake, real) if loss.needs_real_scores else generator(fake)
        want_d = torch.stack([loss.critic_loss(r, f) for r, f in zip(real, fake, strict=True)])
        want_g = torch.stack(
            [
                loss.generator_loss(f, r if loss.needs_real_scores else None)
                for r, f in zip(real, fake, strict=True)
            ]
        )
        ok = torch.allclose(got_d, want_d, rtol=1e-5, atol=1e-6) and torch.allclose(
            got_g, want_g, rtol=1e-5, atol=1e-6
        )
    except Exception as exc:
        raise ConfigError(
            "loss",
            f"the loss plugin {loss.name!r} does not vectorise over members "
            f"(torch.func.vmap: {type(exc).__name__}: {exc}); run without --population",
        ) from exc
    if not ok:
        raise ConfigError(
            "loss",
            f"the loss plugin {loss.name!r} gives other values under torch.func.vmap than "
            f"member by member; run without --population",
        )
    return critic, generator
