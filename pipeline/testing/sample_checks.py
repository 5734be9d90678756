"""Contract checks of what draws, generates and scores samples: datasets, models, metrics.

Each runs the plugin the way the training loop does, on the CPU, with real torch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from pipeline.testing.contract import call_plugin, fail, instantiate
from pipeline.types import Dataset, Metric, Model, ModelPair, Settings


def check_dataset(
    dataset: type[Dataset] | Dataset,
    *,
    settings: Settings | Mapping[str, Any] | None = None,
    n: int = 64,
) -> None:
    """``sample(n, generator)`` gives ``n`` finite float CPU samples of ``shape``, the same
    ones for the same seed, other ones for another seed, without touching torch's global
    RNG; images lie in [-1, 1]; mode ``centers`` and ``std``, when given, make sense."""
    inst = instantiate(dataset, "dataset", settings)
    shape = tuple(inst.shape)
    state = torch.get_rng_state()
    x = call_plugin(inst, "sample", lambda: inst.sample(n, torch.Generator().manual_seed(0)))
    if not torch.equal(state, torch.get_rng_state()):
        raise fail(inst, "sample() used torch's global RNG; draw with the generator it is given")
    if not isinstance(x, Tensor) or tuple(x.shape) != (n, *shape):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise fail(inst, f"sample({n}) gave {got}, expected a tensor of shape {(n, *shape)}")
    if not x.is_floating_point() or x.device.type != "cpu" or not torch.isfinite(x).all():
        raise fail(inst, "samples must be finite floating-point tensors on the CPU")
    if not torch.equal(x, inst.sample(n, torch.Generator().manual_seed(0))):
        raise fail(inst, "the same seed gave different samples")
    if torch.equal(x, inst.sample(n, torch.Generator().manual_seed(1))):
        raise fail(inst, "two different seeds gave the same samples")
    if inst.is_image and (x.min() < -1 - 1e-6 or x.max() > 1 + 1e-6):
        raise fail(inst, f"images must lie in [-1, 1], got [{x.min():.3g}, {x.max():.3g}]")
    if inst.centers is not None:
        if inst.centers.dim() != 2 or inst.centers.shape[1] != x[0].numel():
            raise fail(inst, f"centers has shape {tuple(inst.centers.shape)}")
        if inst.std is None or not inst.std > 0:
            raise fail(inst, f"a dataset with centers needs a positive std, got {inst.std!r}")


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
    inst = instantiate(model, "model", settings)
    torch.manual_seed(seed)
    pair = call_plugin(inst, f"build({data_shape})", lambda: inst.build(tuple(data_shape)))
    if not isinstance(pair, ModelPair):
        raise fail(inst, f"build returned {type(pair).__name__}, not pipeline.types.ModelPair")
    if not isinstance(pair.noise_dim, int) or pair.noise_dim < 1:
        raise fail(inst, f"noise_dim must be a positive int, got {pair.noise_dim!r}")
    z = torch.randn(batch, pair.noise_dim)
    x = call_plugin(inst, "the generator", lambda: pair.generator(z))
    if not isinstance(x, Tensor) or tuple(x.shape) != (batch, *data_shape):
        got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise fail(inst, f"the generator gave {got}, expected {(batch, *data_shape)}")
    scores = call_plugin(inst, "the critic", lambda: pair.critic(x))
    if not isinstance(scores, Tensor) or tuple(scores.shape) not in ((batch,), (batch, 1)):
        got = tuple(scores.shape) if isinstance(scores, Tensor) else type(scores).__name__
        raise fail(inst, f"the critic gave {got}, expected one score per sample ({batch},)")
    if not (torch.isfinite(x).all() and torch.isfinite(scores).all()):
        raise fail(inst, "the generator's samples or the critic's scores are not finite")
    scores.mean().backward()
    if not any(p.grad is not None and p.grad.abs().sum() > 0 for p in pair.generator.parameters()):
        raise fail(inst, "the generator gets no gradient through the critic")
    if pair.critic_batch_independent:
        a, b = x.detach()[: batch // 2], x.detach()[batch // 2 :]
        with torch.no_grad():
            together = pair.critic(torch.cat([a, b])).reshape(-1)
            apart = torch.cat([pair.critic(a).reshape(-1), pair.critic(b).reshape(-1)])
        if not torch.allclose(together, apart, rtol=1e-4, atol=1e-5):
            raise fail(
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
    inst = instantiate(metric, "metric", settings)
    data = instantiate(dataset, "dataset", None)
    if inst.direction not in ("minimize", "maximize"):
        raise fail(inst, f"direction must be 'minimize' or 'maximize', got {inst.direction!r}")
    if not call_plugin(inst, "applies_to", lambda: inst.applies_to(data)):
        raise fail(inst, f"does not apply to dataset {data.name!r}; pass one it applies to")
    samples = data.sample(n, torch.Generator().manual_seed(0))
    value = call_plugin(inst, "compute", lambda: inst.compute(samples, data))
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise fail(inst, f"compute returned {value!r}, not a number") from None
    if value != value or value in (float("inf"), float("-inf")):
        raise fail(inst, f"compute returned {value} on real samples of {data.name!r}")
    if float(inst.compute(samples, data)) != value:
        raise fail(inst, "compute gave two values for the same samples")
