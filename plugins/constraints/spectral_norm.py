"""Spectral normalization of the critic (SN-GAN).

Miyato et al. 2018, "Spectral Normalization for Generative Adversarial Networks": every
critic weight ``W`` is replaced by ``W / σ(W)``, with ``σ`` estimated by power
iteration (``v = Wᵀu/‖Wᵀu‖``, ``u = Wv/‖Wv‖``, ``σ ≈ uᵀWv``; a conv kernel is
reshaped to ``(out_channels, -1)``). One round per forward pass, with ``u`` kept
between steps, was enough in the paper (Appendix A), hence ``n_power_iterations = 1``.

This uses torch's own ``torch.nn.utils.parametrizations.spectral_norm``, which runs the
power iteration on every forward pass in train mode and none in eval mode, and keeps
``u`` and ``v`` as buffers (``parametrizations.weight.0._u`` / ``_v``) so they are saved
in, and restored from, the critic's ``state_dict``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from pydantic import Field

from pipeline import hookimpl
from pipeline.types import Constraint, PopulationConstraint, Settings, StackedNet

if TYPE_CHECKING:
    from torch import Tensor, nn

#: layer types (in ``torch.nn``) whose ``weight`` gets normalized
NORMALIZED_LAYERS: tuple[str, ...] = (
    "Linear",
    "Conv1d",
    "Conv2d",
    "Conv3d",
    "ConvTranspose1d",
    "ConvTranspose2d",
    "ConvTranspose3d",
)


class SpectralNormSettings(Settings):
    #: power-iteration rounds per forward pass (Miyato et al. 2018, Appendix A: 1)
    n_power_iterations: int = Field(default=1, ge=1)


class SpectralNorm(Constraint):
    name = "spectral_norm"
    description = "replace each critic weight W by W/σ(W), power iteration (Miyato 2018)"
    Settings = SpectralNormSettings

    def wrap_critic(self, critic: nn.Module) -> nn.Module:
        return apply_spectral_norm(critic, self.settings.n_power_iterations)

    def diagnostics(self, critic: nn.Module) -> dict[str, Tensor]:
        return {f"sigma/{path or 'root'}": sigma for path, sigma in sigma_estimates(critic).items()}

    @classmethod
    def population_form(cls, settings: Sequence[Settings]) -> PopulationConstraint:
        return PopulationSpectralNorm(settings)


class PopulationSpectralNorm(PopulationConstraint):
    """Spectral norm of K stacked critics: per layer, ``u`` ``(K, out)`` and ``v``
    ``(K, in)``, one power iteration per forward pass for the members in ``critic.mask``,
    as torch's parametrization does in train mode (``_SpectralNorm``: ``u ← Wv/‖Wv‖``,
    ``v ← Wᵀu/‖Wᵀu‖``, ``σ = u·Wv``, eps 1e-12), starting from each member's own
    ``u``/``v`` (:meth:`set_member`). ``n_power_iterations`` is shared by the members."""

    def __init__(self, settings: Sequence[Settings]) -> None:
        super().__init__(settings)
        self.rounds = self.settings[0].n_power_iterations
        self.vectors: dict[str, tuple[Tensor, Tensor]] = {}

    def wrap_critic(self, critic: StackedNet) -> None:
        import torch

        for layer in critic.layers:
            k, out, inp = layer.weight.shape
            u = torch.zeros(k, out, device=layer.weight.device, dtype=layer.weight.dtype)
            v = torch.zeros(k, inp, device=layer.weight.device, dtype=layer.weight.dtype)
            self.vectors[layer.path] = (u, v)
            layer.weight_fn = self._normalizer(critic, u, v)

    def _normalizer(self, critic: StackedNet, u: Tensor, v: Tensor) -> Callable[[Tensor], Tensor]:
        import torch
        import torch.nn.functional as F

        def normalized(weight: Tensor) -> Tensor:
            with torch.no_grad():
                u_new, v_new = u, v
                for _ in range(self.rounds):
                    u_new = F.normalize(torch.bmm(weight, v_new.unsqueeze(-1))[..., 0], dim=1)
                    v_new = F.normalize(
                        torch.bmm(weight.transpose(1, 2), u_new.unsqueeze(-1))[..., 0], dim=1
                    )
                keep = critic.mask.unsqueeze(-1)
                u.copy_(torch.where(keep, u_new, u))
                v.copy_(torch.where(keep, v_new, v))
            # clones, as torch's: a later forward's power iteration updates u, v in place
            u_now, v_now = u.clone(), v.clone()
            sigma = (u_now.unsqueeze(1) @ torch.bmm(weight, v_now.unsqueeze(-1)))[:, 0, 0]
            return weight / sigma.view(-1, 1, 1)

        return normalized

    def set_member(self, k: int, settings: Settings, critic: nn.Module) -> None:
        import torch

        super().set_member(k, settings, critic)
        with torch.no_grad():
            for path, (u, v) in self.vectors.items():
                (param,) = _spectral_parametrizations(critic.get_submodule(path))
                u[k].copy_(param._u)
                v[k].copy_(param._v)

    def store_member(self, k: int, critic: nn.Module) -> None:
        import torch

        with torch.no_grad():
            for path, (u, v) in self.vectors.items():
                (param,) = _spectral_parametrizations(critic.get_submodule(path))
                param._u.copy_(u[k])
                param._v.copy_(v[k])

    def diagnostics(self, critic: StackedNet) -> dict[str, Tensor]:
        import torch

        out: dict[str, Tensor] = {}
        with torch.no_grad():
            for layer in critic.layers:
                u, v = self.vectors[layer.path]
                wv = torch.bmm(layer.weight, v.unsqueeze(-1))[..., 0]
                out[f"sigma/{layer.path}"] = (u * wv).sum(dim=1)
        return out


def apply_spectral_norm(critic: nn.Module, n_power_iterations: int = 1) -> nn.Module:
    """Wrap the weight of every linear and (transposed) conv layer of ``critic``, in place.

    Layers already spectrally normalized are left alone, so wrapping twice is harmless.
    Returns ``critic``.
    """
    from torch import nn
    from torch.nn.utils.parametrizations import spectral_norm

    normalized = tuple(getattr(nn, layer) for layer in NORMALIZED_LAYERS)
    layers = [
        module
        for module in critic.modules()
        if isinstance(module, normalized) and not _spectral_parametrizations(module)
    ]
    for module in layers:
        spectral_norm(module, n_power_iterations=n_power_iterations)
    return critic


def sigma_estimates(critic: nn.Module) -> dict[str, Tensor]:
    """Current power-iteration estimate ``u·(W v)`` of σ(W) for each wrapped layer.

    ``W`` is the unnormalized weight (``parametrizations.weight.original``) reshaped to a
    matrix the way the parametrization does it. Reads the stored ``u`` and ``v`` only: no
    power iteration is run and no buffer changes. Keys are the layers' module paths.
    """
    import torch

    sigmas: dict[str, Tensor] = {}
    with torch.no_grad():
        for path, module in critic.named_modules():
            for param in _spectral_parametrizations(module):
                weight = module.parametrizations.weight.original
                matrix = _weight_matrix(weight, int(getattr(param, "dim", 0)))
                sigmas[path] = torch.dot(param._u, torch.mv(matrix, param._v))
    return sigmas


def _spectral_parametrizations(module: nn.Module) -> list[nn.Module]:
    """The spectral-norm parametrizations of ``module.weight``: those with ``_u``/``_v``."""
    from torch import Tensor
    from torch.nn.utils import parametrize

    if not parametrize.is_parametrized(module, "weight"):
        return []
    return [
        p
        for p in module.parametrizations.weight
        if isinstance(getattr(p, "_u", None), Tensor) and isinstance(getattr(p, "_v", None), Tensor)
    ]


def _weight_matrix(weight: Tensor, dim: int) -> Tensor:
    """``weight`` with dimension ``dim`` (output channels) first, flattened to 2-D."""
    if dim != 0:
        weight = weight.permute(dim, *(d for d in range(weight.dim()) if d != dim))
    return weight.flatten(1)


@hookimpl
def register_constraints(register: Callable[[type[Constraint]], None]) -> None:
    register(SpectralNorm)
