"""What every check of the kit shares: the error it raises and running plugin code.

A failed check raises :class:`PluginContractError` (an ``AssertionError``) whose message
starts with the plugin's kind, name and class.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from pydantic import ValidationError
from torch import Tensor

from pipeline.types import KINDS, Kind, Plugin, Settings


class PluginContractError(AssertionError):
    """A plugin broke the hook contract; the message names the plugin."""


PluginLike = type[Plugin] | Plugin


def label(plugin: PluginLike) -> str:
    cls = plugin if isinstance(plugin, type) else type(plugin)
    kind = getattr(cls, "kind", "plugin")
    name = getattr(cls, "name", "?")
    return f"{kind} {name!r} ({cls.__module__}.{cls.__qualname__})"


def fail(plugin: PluginLike, problem: str) -> PluginContractError:
    return PluginContractError(f"{label(plugin)}: {problem}")


def instantiate(
    plugin: PluginLike, kind: Kind, settings: Settings | Mapping[str, Any] | None
) -> Any:
    """An instance of ``plugin`` (a class of ``kind``) with ``settings``, or the instance."""
    base = KINDS[kind].base
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
        raise fail(cls, f"its Settings refuse {dict(settings or {})}: {exc}") from None
    try:
        return cls(parsed)
    except Exception as exc:
        raise fail(cls, f"{cls.__name__}(settings) raised {type(exc).__name__}: {exc}") from exc


def call_plugin(plugin: PluginLike, what: str, fn: Callable[[], Any]) -> Any:
    """Run plugin code; an exception becomes a contract failure naming the plugin."""
    try:
        return fn()
    except PluginContractError:
        raise
    except Exception as exc:
        raise fail(plugin, f"{what} raised {type(exc).__name__}: {exc}") from exc


def check_scalar(plugin: PluginLike, what: str, value: Any) -> Tensor:
    if not isinstance(value, Tensor):
        raise fail(plugin, f"{what} returned {type(value).__name__}, not a torch.Tensor")
    if value.dim() != 0:
        raise fail(
            plugin,
            f"{what} returned a tensor of shape {tuple(value.shape)}, not a scalar "
            f"(reduce it, e.g. with .mean())",
        )
    if not value.is_floating_point():
        raise fail(plugin, f"{what} returned a {value.dtype} tensor, not a floating one")
    if not torch.isfinite(value):
        raise fail(plugin, f"{what} returned {value.item()}, not a finite value")
    return value


def check_grad(plugin: PluginLike, what: str, grad: Tensor | None, *, nonzero: bool) -> None:
    if grad is None:
        raise fail(plugin, f"{what}: no gradient flows to it (is it used, and not detached?)")
    if not torch.isfinite(grad).all():
        raise fail(plugin, f"{what}: its gradient is not finite")
    if nonzero and not grad.abs().sum() > 0:
        raise fail(plugin, f"{what}: its gradient is zero everywhere")
