"""Contract checks of what one training step calls: losses, constraints, optimizers.

Each runs the plugin the way the training loop does, on the CPU, with real torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from pipeline.testing.contract import (
    call_plugin,
    check_grad,
    check_scalar,
    fail,
    instantiate,
)
from pipeline.types import Constraint, Loss, Optimizer, Settings

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
    inst = instantiate(loss, "loss", settings)
    for flag in ("needs_real_scores", "estimates_wasserstein"):
        if not isinstance(getattr(inst, flag), bool):
            raise fail(inst, f"{flag} must be a bool, got {getattr(inst, flag)!r}")
    gen = torch.Generator().manual_seed(seed)
    for scale in scales:
        at = f"on random logits of scale {scale:g}"
        real = (scale * torch.randn(batch, generator=gen)).requires_grad_(True)
        fake = (scale * torch.randn(batch, generator=gen)).requires_grad_(True)
        real0, fake0 = real.detach().clone(), fake.detach().clone()
        d = check_scalar(
            inst,
            f"critic_loss {at}",
            call_plugin(inst, f"critic_loss {at}", lambda r=real, f=fake: inst.critic_loss(r, f)),
        )
        if not torch.equal(real.detach(), real0) or not torch.equal(fake.detach(), fake0):
            raise fail(inst, f"critic_loss {at} changed its input scores in place")
        if not d.requires_grad:
            raise fail(inst, f"critic_loss {at} does not depend on the scores (no grad_fn)")
        g_real, g_fake = torch.autograd.grad(d, (real, fake), allow_unused=True)
        check_grad(inst, f"critic_loss {at}, real_scores", g_real, nonzero=True)
        check_grad(inst, f"critic_loss {at}, fake_scores", g_fake, nonzero=True)
        again = inst.critic_loss(real.detach(), fake.detach())
        if not torch.allclose(again, d.detach(), rtol=1e-5, atol=1e-6):
            raise fail(
                inst, f"critic_loss {at} is not a pure function: {d.item()} then {again.item()}"
            )

        real_in = real if inst.needs_real_scores else None
        g = check_scalar(
            inst,
            f"generator_loss {at}",
            call_plugin(
                inst,
                f"generator_loss {at}",
                lambda f=fake, r=real_in: inst.generator_loss(f, r),
            ),
        )
        if not g.requires_grad:
            raise fail(inst, f"generator_loss {at} does not depend on the fake scores")
        (g_fake,) = torch.autograd.grad(g, (fake,), allow_unused=True)
        check_grad(inst, f"generator_loss {at}, fake_scores", g_fake, nonzero=True)

    if orientation:
        ones = torch.ones(batch)
        right = inst.critic_loss(ones, -ones)
        wrong = inst.critic_loss(-ones, ones)
        if not right < wrong:
            raise fail(
                inst,
                f"critic_loss(real=+1, fake=-1) = {right.item():.4g} is not below "
                f"critic_loss(real=-1, fake=+1) = {wrong.item():.4g}: the host reads a higher "
                f"score as 'more real' (pass orientation=False if your loss means otherwise)",
            )
        real_in = ones if inst.needs_real_scores else None
        high, low = inst.generator_loss(ones, real_in), inst.generator_loss(-ones, real_in)
        if not high < low:
            raise fail(
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
    inst = instantiate(constraint, "constraint", settings)
    if not isinstance(inst.allows_single_pass, bool):
        raise fail(inst, f"allows_single_pass must be a bool, got {inst.allows_single_pass!r}")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    base = critic if critic is not None else _TinyCritic(data_shape)
    wrapped = call_plugin(inst, "wrap_critic", lambda: inst.wrap_critic(base))
    if not isinstance(wrapped, nn.Module):
        raise fail(inst, f"wrap_critic returned {type(wrapped).__name__}, not an nn.Module")
    params = [p for p in wrapped.parameters() if p.requires_grad]
    if not params:
        raise fail(inst, "after wrap_critic the critic has no trainable parameters")
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
                raise fail(inst, f"the wrapped critic gives non-finite or misshaped scores {at}")
        total = fake_scores.mean() - real_scores.mean()
        pen = call_plugin(inst, f"penalty {at}", lambda r=real, f=fake: inst.penalty(wrapped, r, f))
        if pen is not None:
            check_scalar(inst, f"penalty {at}", pen)
            if not pen.requires_grad:
                raise fail(
                    inst,
                    f"penalty {at} does not depend on the critic's parameters (detached, or "
                    f"computed under no_grad?); return None when there is no penalty",
                )
            if step == 0:
                grads = torch.autograd.grad(pen, params, retain_graph=True, allow_unused=True)
                if all(g is None or not g.abs().sum() > 0 for g in grads):
                    raise fail(inst, f"penalty {at} gives the critic's parameters no gradient")
            total = total + pen
        if not (torch.equal(real, real0) and torch.equal(fake, fake0)):
            raise fail(inst, f"penalty {at} changed the real or fake batch in place")
        if real.requires_grad or fake.requires_grad:
            raise fail(
                inst,
                f"penalty {at} set requires_grad on the batch it was given; work on "
                f"real.detach().requires_grad_() instead",
            )
        opt.zero_grad(set_to_none=True)
        total.backward()
        for p in params:
            if p.grad is not None and not torch.isfinite(p.grad).all():
                raise fail(inst, f"the critic's gradients are not finite {at}")
        opt.step()
        call_plugin(inst, f"after_critic_step {at}", lambda: inst.after_critic_step(wrapped))
        diagnostics = call_plugin(inst, f"diagnostics {at}", lambda: inst.diagnostics(wrapped))
        if not isinstance(diagnostics, dict):
            raise fail(inst, f"diagnostics returned {type(diagnostics).__name__}, not a dict")
        for key, value in diagnostics.items():
            if not isinstance(key, str) or not isinstance(value, Tensor | float | int):
                raise fail(inst, f"diagnostics must map names to tensors, got {key!r}: {value!r}")
            if not torch.isfinite(torch.as_tensor(value)).all():
                raise fail(inst, f"diagnostic {key!r} is not finite {at}")
    after = wrapped.state_dict()
    if all(torch.equal(before[k], after[k]) for k in before):
        raise fail(
            inst, f"the critic did not change in {steps} optimizer steps: it is not trainable"
        )
    with torch.no_grad():
        scores = wrapped(torch.randn(batch, *data_shape, generator=gen))
    if not torch.isfinite(scores).all():
        raise fail(inst, f"the critic gives non-finite scores after {steps} steps")


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
    inst = instantiate(optimizer, "optimizer", settings)
    torch.manual_seed(seed)

    def model() -> nn.Module:
        return nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))

    net = model()
    opt = call_plugin(inst, "build", lambda: inst.build(net.parameters()))
    if not isinstance(opt, torch.optim.Optimizer):
        raise fail(inst, f"build returned {type(opt).__name__}, not a torch.optim.Optimizer")
    covered = {id(p) for group in opt.param_groups for p in group["params"]}
    if covered != {id(p) for p in net.parameters()}:
        raise fail(inst, "build did not hand every parameter it was given to the optimizer")
    before = [p.detach().clone() for p in net.parameters()]
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    for _ in range(steps):
        loss = (net(x) - y).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        call_plugin(inst, "step()", opt.step)
    after = list(net.parameters())
    if all(torch.equal(a, b) for a, b in zip(before, after, strict=True)):
        raise fail(inst, f"{steps} steps left every parameter unchanged")
    if not all(torch.isfinite(p).all() for p in after):
        raise fail(inst, f"the parameters are not finite after {steps} steps")
    twin = model()
    twin_opt = inst.build(twin.parameters())
    call_plugin(inst, "load_state_dict", lambda: twin_opt.load_state_dict(opt.state_dict()))
