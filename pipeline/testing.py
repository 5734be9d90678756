"""A plugin author's test kit: ready-made contract checks and a registration helper.

Each ``check_*`` function takes a plugin class (or an instance, to test other settings),
exercises it the way the training loop does, on the CPU, with real torch, and raises
:class:`PluginContractError` (an ``AssertionError``) whose message starts with the
plugin's kind, name and class, so a failing test says which plugin broke which rule::

    from pipeline.testing import check_constraint, check_loss, check_trains

    from my_package.my_loss import MyLoss

    def test_my_loss_keeps_the_contract():
        check_loss(MyLoss)

    def test_my_loss_trains():
        check_trains(loss=MyLoss, steps=20)   # registered for the length of the call

:func:`registered` registers plugin classes (or hook modules) in the process-wide
registry for the length of a ``with`` block; the pytest fixture ``register_plugin`` does
the same for the length of one test (enable it with ``pytest_plugins = ["pipeline.testing"]``
in your ``conftest.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from types import ModuleType
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor, nn

from pipeline.errors import NonFiniteLossError
from pipeline.registry import PluginInfo, PluginRuntimeError, Registry, default_registry
from pipeline.types import (
    BASE_CLASSES,
    Constraint,
    Dataset,
    Kind,
    Loss,
    Metric,
    Model,
    ModelPair,
    Optimizer,
    Plugin,
    Settings,
)

__all__ = [
    "PluginContractError",
    "check_constraint",
    "check_dataset",
    "check_loss",
    "check_metric",
    "check_model",
    "check_optimizer",
    "check_plugin",
    "check_trains",
    "registered",
]


class PluginContractError(AssertionError):
    """A plugin broke the hook contract; the message names the plugin."""


PluginLike = type[Plugin] | Plugin


def _label(plugin: PluginLike) -> str:
    cls = plugin if isinstance(plugin, type) else type(plugin)
    kind = getattr(cls, "kind", "plugin")
    name = getattr(cls, "name", "?")
    return f"{kind} {name!r} ({cls.__module__}.{cls.__qualname__})"


def _fail(plugin: PluginLike, problem: str) -> PluginContractError:
    return PluginContractError(f"{_label(plugin)}: {problem}")


def _instance(plugin: PluginLike, kind: Kind, settings: Settings | Mapping[str, Any] | None) -> Any:
    """An instance of ``plugin`` (a class of ``kind``) with ``settings``, or the instance."""
    base = BASE_CLASSES[kind]
    cls = plugin if isinstance(plugin, type) else type(plugin)
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginContractError(
            f"{cls!r} is not a {kind} plugin: it does not subclass pipeline.types.{base.__name__}"
        )
    if not isinstance(plugin, type):
        if settings is not None:
            raise TypeError("give settings with the class, not with an instance")
        return plugin
    try:
        if settings is None:
            parsed = cls.Settings()
        elif isinstance(settings, Settings):
            parsed = settings
        else:
            parsed = cls.Settings.model_validate(dict(settings))
    except ValidationError as exc:
        raise _fail(cls, f"its Settings refuse {dict(settings or {})}: {exc}") from None
    try:
        return cls(parsed)
    except Exception as exc:
        raise _fail(cls, f"{cls.__name__}(settings) raised {type(exc).__name__}: {exc}") from exc


def _call(plugin: PluginLike, what: str, fn: Callable[[], Any]) -> Any:
    """Run plugin code; an exception becomes a contract failure naming the plugin."""
    try:
        return fn()
    except PluginContractError:
        raise
    except Exception as exc:
        raise _fail(plugin, f"{what} raised {type(exc).__name__}: {exc}") from exc


def _check_scalar(plugin: PluginLike, what: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise _fail(plugin, f"{what} returned {type(value).__name__}, not a torch.Tensor")
    if value.dim() != 0:
        raise _fail(
            plugin,
            f"{what} returned a tensor of shape {tuple(value.shape)}, not a scalar "
            f"(reduce it, e.g. with .mean())",
        )
    if not value.is_floating_point():
        raise _fail(plugin, f"{what} returned a {value.dtype} tensor, not a floating one")
    if not torch.isfinite(value):
        raise _fail(plugin, f"{what} returned {value.item()}, not a finite value")
    return value


def _check_grad(plugin: PluginLike, what: str, grad: Tensor | None, *, nonzero: bool) -> None:
    if grad is None:
        raise _fail(plugin, f"{what}: no gradient flows to it (is it used, and not detached?)")
    if not torch.isfinite(grad).all():
        raise _fail(plugin, f"{what}: its gradient is not finite")
    if nonzero and not grad.abs().sum() > 0:
        raise _fail(plugin, f"{what}: its gradient is zero everywhere")


# -- losses ----------------------------------------------------------------------------


def check_loss(
    loss: type[Loss] | Loss,
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    batch: int = 64,
    scales: tuple[float, ...] = (1.0, 50.0),
    orientation: bool = True,
    seed: int = 0,
) -> None:
    """A loss returns finite scalar tensors with finite, non-zero gradients.

    On random logits of each size in ``scales`` (the critic's raw scores, shape
    ``(batch,)``): ``critic_loss`` depends on both the real and the fake scores,
    ``generator_loss`` on the fake ones; both are pure (same inputs, same value, inputs
    left alone). With ``orientation``, a higher score means "more real": a critic that
    scores real above fake has a lower critic loss than one that scores them the other way
    round, and the generator's loss falls as the fake scores rise.
    """
    inst = _instance(loss, "loss", settings)
    for flag in ("needs_real_scores", "estimates_wasserstein"):
        if not isinstance(getattr(inst, flag), bool):
            raise _fail(inst, f"{flag} must be a bool, got {getattr(inst, flag)!r}")
    gen = torch.Generator().manual_seed(seed)
    for scale in scales:
        at = f"on random logits of scale {scale:g}"
        real = (scale * torch.randn(batch, generator=gen)).requires_grad_(True)
        fake = (scale * torch.randn(batch, generator=gen)).requires_grad_(True)
        real0, fake0 = real.detach().clone(), fake.detach().clone()
        d = _check_scalar(
            inst,
            f"critic_loss {at}",
            _call(inst, f"critic_loss {at}", lambda r=real, f=fake: inst.critic_loss(r, f)),
        )
        if not torch.equal(real.detach(), real0) or not torch.equal(fake.detach(), fake0):
            raise _fail(inst, f"critic_loss {at} changed its input scores in place")
        if not d.requires_grad:
            raise _fail(inst, f"critic_loss {at} does not depend on the scores (no grad_fn)")
        g_real, g_fake = torch.autograd.grad(d, (real, fake), allow_unused=True)
        _check_grad(inst, f"critic_loss {at}, real_scores", g_real, nonzero=True)
        _check_grad(inst, f"critic_loss {at}, fake_scores", g_fake, nonzero=True)
        again = inst.critic_loss(real.detach(), fake.detach())
        if not torch.allclose(again, d.detach(), rtol=1e-5, atol=1e-6):
            raise _fail(
                inst, f"critic_loss {at} is not a pure function: {d.item()} then {again.item()}"
            )

        real_in = real if inst.needs_real_scores else None
        g = _check_scalar(
            inst,
            f"generator_loss {at}",
            _call(
                inst,
                f"generator_loss {at}",
                lambda f=fake, r=real_in: inst.generator_loss(f, r),
            ),
        )
        if not g.requires_grad:
            raise _fail(inst, f"generator_loss {at} does not depend on the fake scores")
        (g_fake,) = torch.autograd.grad(g, (fake,), allow_unused=True)
        _check_grad(inst, f"generator_loss {at}, fake_scores", g_fake, nonzero=True)

    if orientation:
        ones = torch.ones(batch)
        right = inst.critic_loss(ones, -ones)
        wrong = inst.critic_loss(-ones, ones)
        if not right < wrong:
            raise _fail(
                inst,
                f"critic_loss(real=+1, fake=-1) = {right.item():.4g} is not below "
                f"critic_loss(real=-1, fake=+1) = {wrong.item():.4g}: the host reads a higher "
                f"score as 'more real' (pass orientation=False if your loss means otherwise)",
            )
        real_in = ones if inst.needs_real_scores else None
        high, low = inst.generator_loss(ones, real_in), inst.generator_loss(-ones, real_in)
        if not high < low:
            raise _fail(
                inst,
                f"generator_loss(fake=+1) = {high.item():.4g} is not below "
                f"generator_loss(fake=-1) = {low.item():.4g}: the generator must gain from "
                f"fakes the critic scores as real",
            )


# -- constraints -----------------------------------------------------------------------


class _TinyCritic(nn.Module):
    def __init__(self, data_shape: tuple[int, ...], width: int = 16) -> None:
        super().__init__()
        size = 1
        for d in data_shape:
            size *= d
        self.net = nn.Sequential(nn.Linear(size, width), nn.LeakyReLU(0.2), nn.Linear(width, 1))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x.flatten(1)).squeeze(-1)


def check_constraint(
    constraint: type[Constraint] | Constraint,
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    critic: nn.Module | None = None,
    data_shape: tuple[int, ...] = (2,),
    batch: int = 32,
    steps: int = 3,
    lr: float = 0.05,
    seed: int = 0,
) -> None:
    """A constraint keeps the critic trainable and its penalty finite.

    The constraint wraps a tiny critic (or ``critic``), then for ``steps`` critic steps as
    the training loop takes them — WGAN critic loss plus ``penalty(critic, real, fake)``,
    one SGD step, ``after_critic_step`` — the scores, the penalty, the gradients and the
    ``diagnostics`` must stay finite, the penalty must be a scalar that depends on the
    critic and leaves the batches alone, and the critic's parameters must change.
    """
    inst = _instance(constraint, "constraint", settings)
    if not isinstance(inst.allows_single_pass, bool):
        raise _fail(inst, f"allows_single_pass must be a bool, got {inst.allows_single_pass!r}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    base = critic if critic is not None else _TinyCritic(data_shape)
    wrapped = _call(inst, "wrap_critic", lambda: inst.wrap_critic(base))
    if not isinstance(wrapped, nn.Module):
        raise _fail(inst, f"wrap_critic returned {type(wrapped).__name__}, not an nn.Module")
    params = [p for p in wrapped.parameters() if p.requires_grad]
    if not params:
        raise _fail(inst, "after wrap_critic the critic has no trainable parameters")
    before = {k: v.detach().clone() for k, v in wrapped.state_dict().items()}
    opt = torch.optim.SGD(params, lr=lr)
    for step in range(steps):
        at = f"at critic step {step}"
        real = 1.0 + torch.randn(batch, *data_shape, generator=gen)
        fake = torch.randn(batch, *data_shape, generator=gen)
        real0, fake0 = real.clone(), fake.clone()
        real_scores, fake_scores = wrapped(real), wrapped(fake)
        for scores in (real_scores, fake_scores):
            if scores.shape[0] != batch or not torch.isfinite(scores).all():
                raise _fail(inst, f"the wrapped critic gives non-finite or misshaped scores {at}")
        total = fake_scores.mean() - real_scores.mean()
        pen = _call(inst, f"penalty {at}", lambda r=real, f=fake: inst.penalty(wrapped, r, f))
        if pen is not None:
            _check_scalar(inst, f"penalty {at}", pen)
            if not pen.requires_grad:
                raise _fail(
                    inst,
                    f"penalty {at} does not depend on the critic's parameters (detached, or "
                    f"computed under no_grad?); return None when there is no penalty",
                )
            if step == 0:
                grads = torch.autograd.grad(pen, params, retain_graph=True, allow_unused=True)
                if all(g is None or not g.abs().sum() > 0 for g in grads):
                    raise _fail(inst, f"penalty {at} gives the critic's parameters no gradient")
            total = total + pen
        if not (torch.equal(real, real0) and torch.equal(fake, fake0)):
            raise _fail(inst, f"penalty {at} changed the real or fake batch in place")
        if real.requires_grad or fake.requires_grad:
            raise _fail(
                inst,
                f"penalty {at} set requires_grad on the batch it was given; work on "
                f"real.detach().requires_grad_() instead",
            )
        opt.zero_grad(set_to_none=True)
        total.backward()
        for p in params:
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise _fail(inst, f"the critic's gradients are not finite {at}")
        opt.step()
        _call(inst, f"after_critic_step {at}", lambda: inst.after_critic_step(wrapped))
        diagnostics = _call(inst, f"diagnostics {at}", lambda: inst.diagnostics(wrapped))
        if not isinstance(diagnostics, dict):
            raise _fail(inst, f"diagnostics returned {type(diagnostics).__name__}, not a dict")
        for key, value in diagnostics.items():
            if not isinstance(key, str) or not isinstance(value, Tensor | float | int):
                raise _fail(inst, f"diagnostics must map names to tensors, got {key!r}: {value!r}")
            if not torch.isfinite(torch.as_tensor(value)).all():
                raise _fail(inst, f"diagnostic {key!r} is not finite {at}")
    after = wrapped.state_dict()
    if all(torch.equal(before[k], after[k]) for k in before):
        raise _fail(
            inst, f"the critic did not change in {steps} optimizer steps: it is not trainable"
        )
    with torch.no_grad():
        scores = wrapped(torch.randn(batch, *data_shape, generator=gen))
    if not torch.isfinite(scores).all():
        raise _fail(inst, f"the critic gives non-finite scores after {steps} steps")


# -- optimizers ------------------------------------------------------------------------


def check_optimizer(
    optimizer: type[Optimizer] | Optimizer,
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    steps: int = 2,
    seed: int = 0,
) -> None:
    """An optimizer steps on a tiny model: it covers every parameter, changes them, keeps
    them finite, and its state survives ``state_dict`` / ``load_state_dict`` (checkpoints)."""
    inst = _instance(optimizer, "optimizer", settings)
    torch.manual_seed(seed)

    def model() -> nn.Module:
        return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    net = model()
    opt = _call(inst, "build", lambda: inst.build(net.parameters()))
    if not isinstance(opt, torch.optim.Optimizer):
        raise _fail(inst, f"build returned {type(opt).__name__}, not a torch.optim.Optimizer")
    covered = {id(p) for group in opt.param_groups for p in group["params"]}
    if covered != {id(p) for p in net.parameters()}:
        raise _fail(inst, "build did not hand every parameter it was given to the optimizer")
    before = [p.detach().clone() for p in net.parameters()]
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    for _ in range(steps):
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _call(inst, "step()", opt.step)
    after = list(net.parameters())
    if all(torch.equal(a, b) for a, b in zip(before, after, strict=True)):
        raise _fail(inst, f"{steps} steps left every parameter unchanged")
    if not all(torch.isfinite(p).all() for p in after):
        raise _fail(inst, f"the parameters are not finite after {steps} steps")
    twin = model()
    twin_opt = inst.build(twin.parameters())
    _call(inst, "load_state_dict", lambda: twin_opt.load_state_dict(opt.state_dict()))


# -- datasets, models, metrics ---------------------------------------------------------


def check_dataset(
    dataset: type[Dataset] | Dataset,
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    n: int = 64,
) -> None:
    """``sample(n, generator)`` gives ``n`` finite float CPU samples of ``shape``, the same
    ones for the same seed, other ones for another seed, without touching torch's global
    RNG; images lie in [-1, 1]; mode ``centers`` and ``std``, when given, make sense."""
    inst = _instance(dataset, "dataset", settings)
    shape = tuple(inst.shape)
    state = torch.get_rng_state()
    x = _call(inst, "sample", lambda: inst.sample(n, torch.Generator().manual_seed(0)))
    if not torch.equal(state, torch.get_rng_state()):
        raise _fail(inst, "sample() used torch's global RNG; draw with the generator it is given")
    if not isinstance(x, Tensor) or tuple(x.shape) != (n, *shape):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise _fail(inst, f"sample({n}) gave {got}, expected a tensor of shape {(n, *shape)}")
    if not x.is_floating_point() or x.device.type != "cpu" or not torch.isfinite(x).all():
        raise _fail(inst, "samples must be finite floating-point tensors on the CPU")
    if not torch.equal(x, inst.sample(n, torch.Generator().manual_seed(0))):
        raise _fail(inst, "the same seed gave different samples")
    if torch.equal(x, inst.sample(n, torch.Generator().manual_seed(1))):
        raise _fail(inst, "two different seeds gave the same samples")
    if inst.is_image and (x.min() < -1 - 1e-6 or x.max() > 1 + 1e-6):
        raise _fail(inst, f"images must lie in [-1, 1], got [{x.min():.3g}, {x.max():.3g}]")
    if inst.centers is not None:
        if inst.centers.dim() != 2 or inst.centers.shape[1] != x[0].numel():
            raise _fail(inst, f"centers has shape {tuple(inst.centers.shape)}")
        if inst.std is None or not inst.std > 0:
            raise _fail(inst, f"a dataset with centers needs a positive std, got {inst.std!r}")


def check_model(
    model: type[Model] | Model,
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    data_shape: tuple[int, ...] = (2,),
    batch: int = 8,
    seed: int = 0,
) -> None:
    """``build(data_shape)`` gives a generator of ``(batch, *data_shape)`` samples from
    ``randn(batch, noise_dim)`` and a critic of finite ``(batch,)`` scores, through which the
    generator gets gradients; ``critic_batch_independent`` tells the truth."""
    inst = _instance(model, "model", settings)
    torch.manual_seed(seed)
    pair = _call(inst, f"build({data_shape})", lambda: inst.build(tuple(data_shape)))
    if not isinstance(pair, ModelPair):
        raise _fail(inst, f"build returned {type(pair).__name__}, not pipeline.types.ModelPair")
    if not isinstance(pair.noise_dim, int) or pair.noise_dim < 1:
        raise _fail(inst, f"noise_dim must be a positive int, got {pair.noise_dim!r}")
    z = torch.randn(batch, pair.noise_dim)
    x = _call(inst, "the generator", lambda: pair.generator(z))
    if not isinstance(x, Tensor) or tuple(x.shape) != (batch, *data_shape):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise _fail(inst, f"the generator gave {got}, expected {(batch, *data_shape)}")
    scores = _call(inst, "the critic", lambda: pair.critic(x))
    if not isinstance(scores, Tensor) or tuple(scores.shape) not in ((batch,), (batch, 1)):
        got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise _fail(inst, f"the critic gave {got}, expected one score per sample ({batch},)")
    if not (torch.isfinite(x).all() and torch.isfinite(scores).all()):
        raise _fail(inst, "the generator's samples or the critic's scores are not finite")
    scores.mean().backward()
    if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in pair.generator.parameters()):
        raise _fail(inst, "the generator gets no gradient through the critic")
    if pair.critic_batch_independent:
        a, b = x.detach()[: batch // 2], x.detach()[batch // 2 :]
        with torch.no_grad():
            together = pair.critic(torch.cat([a, b])).reshape(-1)
            apart = torch.cat([pair.critic(a).reshape(-1), pair.critic(b).reshape(-1)])
        if not torch.allclose(together, apart, rtol=1e-4, atol=1e-5):
            raise _fail(
                inst,
                "critic_batch_independent is True but scoring a batch at once differs from "
                "scoring its halves (batch norm in the critic?)",
            )


def check_metric(
    metric: type[Metric] | Metric,
    dataset: type[Dataset] | Dataset,
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    n: int = 500,
) -> None:
    """On ``n`` real samples of ``dataset`` (one it applies to), ``compute`` gives the same
    finite float twice; ``direction`` is minimize or maximize."""
    inst = _instance(metric, "metric", settings)
    data = _instance(dataset, "dataset", None)
    if inst.direction not in ("minimize", "maximize"):
        raise _fail(inst, f"direction must be 'minimize' or 'maximize', got {inst.direction!r}")
    if not _call(inst, "applies_to", lambda: inst.applies_to(data)):
        raise _fail(inst, f"does not apply to dataset {data.name!r}; pass one it applies to")
    samples = data.sample(n, torch.Generator().manual_seed(0))
    value = _call(inst, "compute", lambda: inst.compute(samples, data))
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise _fail(inst, f"compute returned {value!r}, not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise _fail(inst, f"compute returned {value} on real samples of {data.name!r}")
    if float(inst.compute(samples, data)) != value:
        raise _fail(inst, "compute gave two values for the same samples")


def check_plugin(plugin: PluginLike, **kwargs: Any) -> None:
    """The check of the plugin's kind (a metric needs ``dataset=``)."""
    kind = getattr(plugin, "kind", None)
    checks: dict[str, Callable[..., None]] = {
        "loss": check_loss,
        "constraint": check_constraint,
        "optimizer": check_optimizer,
        "dataset": check_dataset,
        "model": check_model,
    }
    if kind == "metric":
        dataset = kwargs.pop("dataset")
        check_metric(plugin, dataset, **kwargs)  # type: ignore[arg-type]
    elif kind in checks:
        checks[kind](plugin, **kwargs)
    else:
        raise PluginContractError(f"{plugin!r} is not a plugin: it has no known kind")


# -- registering for one test ------------------------------------------------------------

_counter = itertools.count()


@contextmanager
def registered(
    *plugins: type[Plugin] | ModuleType | object,
    registry: Registry | None = None,
    package: str = "test",
    version: str = "",
) -> Iterator[list[PluginInfo]]:
    """Register plugin classes (or modules/objects with hooks) for the length of the block.

    Classes need no hook: they are registered as one plugin module named
    ``test-<n>``. Everything is unregistered on the way out, also when the block raises.
    The default registry is the process-wide one (what ``pipeline`` commands run in this
    process use); yields what was registered.
    """
    reg = registry if registry is not None else default_registry()
    classes = [p for p in plugins if isinstance(p, type)]
    others = [p for p in plugins if not isinstance(p, type)]
    names: list[str] = []
    infos: list[PluginInfo] = []
    try:
        if classes:
            name = f"test-{next(_counter)}"
            infos += reg.add_classes(*classes, name=name, package=package, version=version)
            names.append(name)
        for other in others:
            name = f"test-{next(_counter)}-{getattr(other, '__name__', type(other).__name__)}"
            infos += reg.add_module(other, name=name, package=package, version=version)
            names.append(name)
        yield infos
    finally:
        for name in reversed(names):
            reg.unregister(name)


# -- a short real training ---------------------------------------------------------------


def check_trains(
    *,
    loss: str | type[Loss] = "wgan",
    constraint: str | type[Constraint] = "none",
    optimizer: str | type[Optimizer] = "adam",
    dataset: str | type[Dataset] = "ring8",
    model: str | type[Model] = "mlp",
    settings: Mapping[str, Mapping[str, Any]] | None = None,
    steps: int = 20,
    registry: Registry | None = None,
):
    """Train a tiny experiment with these plugins through the real loop (untracked).

    Plugins are names, or classes registered for the length of the call. ``settings``
    maps a section (``loss``, ``constraint``, ``optimizer.critic``, …) to settings.
    Every logged value and every metric must stay finite; returns the ``TrainResult``.
    """
    from pipeline.config import validate
    from pipeline.train import run_training

    reg = registry if registry is not None else default_registry()
    choices = {
        "dataset": dataset,
        "model": model,
        "loss": loss,
        "constraint": constraint,
        "optimizer.generator": optimizer,
        "optimizer.critic": optimizer,
    }
    classes = list(
        {c: None for c in choices.values() if isinstance(c, type) and reg.info_of(c) is None}
    )
    settings = dict(settings or {})
    data: dict[str, Any] = {
        "name": "check_trains",
        "optimizer": {},
        "train": {
            "steps": steps,
            "n_critic": 2,
            "batch_size": 64,
            "eval_every": steps,
            "eval_samples": 256,
            "log_every": max(1, steps // 4),
            "device": "cpu",
        },
    }
    with ExitStack() as stack:
        stack.enter_context(registered(*classes, registry=reg))
        for section, choice in choices.items():
            name = choice if isinstance(choice, str) else choice.name
            body = {"name": name, **dict(settings.get(section, {}))}
            if section == "model" and name == "mlp" and "model" not in settings:
                body |= {"g_width": 32, "d_width": 32, "g_depth": 2, "d_depth": 2}
            if "." in section:
                data["optimizer"][section.split(".")[1]] = body
            else:
                data[section] = body
        exp = validate(data, reg)
        label = ", ".join(
            f"{section} {c.info.name!r} ({c.info.origin})" for section, c in exp.plugins.items()
        )
        try:
            result = run_training(exp, tracking=None, progress=False)
        except (PluginRuntimeError, NonFiniteLossError) as exc:
            raise PluginContractError(f"training with {label} failed: {exc}") from exc
    for key, (_, values) in result.history.items():
        if not all(v == v and abs(v) != float("inf") for v in values):
            raise PluginContractError(f"training with {label}: {key} is not finite")
    if result.steps != steps:
        raise PluginContractError(f"training with {label} stopped at step {result.steps}")
    return result


# -- pytest ----------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the kit works without pytest
    pass
else:
    __all__ += ["register_plugin"]

    @pytest.fixture
    def register_plugin():
        """``register_plugin(MyLoss)`` registers for the length of the test (then removes).

        Takes what :func:`registered` takes, plus ``registry=``; returns what was
        registered.
        """
        with ExitStack() as stack:

            def register(*plugins: Any, **kwargs: Any) -> list[PluginInfo]:
                return stack.enter_context(registered(*plugins, **kwargs))

            yield register
