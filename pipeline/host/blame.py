"""Naming the plugin whose code raised, from the traceback.

The training loop and the tuner run plugin code (``with blame_plugins(infos): …``); an
exception from it becomes a :class:`PluginRuntimeError` that names the plugin, its package
and version, where it raised, and how to block it.
"""

from __future__ import annotations

from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from pipeline.errors import PipelineError, PluginError, resource_failure
from pipeline.host.plugin_manager import block_hint

if TYPE_CHECKING:
    from pipeline.host.registry import PluginInfo


class PluginRuntimeError(PluginError):
    """Plugin code raised while an experiment was built or trained."""

    exit_code = 1

    def __init__(self, info: PluginInfo, error: BaseException, where: str) -> None:
        self.info = info
        self.error = error
        self.where = where
        ran_out = resource_failure(error)  # the machine's limit, not the plugin's fault
        super().__init__(
            f"{info.describe()} ran {ran_out} (at {where})"
            if ran_out
            else f"{info.describe()} raised {type(error).__name__}: {error} (at {where}); "
            f"pick another {info.kind}, or {block_hint(info.module)}"
        )


def plugin_failure(error: BaseException, infos: Iterable[PluginInfo]) -> PluginRuntimeError | None:
    """A :class:`PluginRuntimeError` naming the plugin whose code raised ``error``.

    The culprit is the outermost frame of the traceback running a method of one of
    ``infos``' classes (the plugin the host called), else the outermost frame running a
    function of one of their modules; the location given is the deepest frame of that
    plugin's code. ``None`` when no plugin code is in the traceback, and for the host's own
    errors (:class:`PipelineError`, ``KeyboardInterrupt``).
    """
    if isinstance(error, PipelineError) or not isinstance(error, Exception):
        return None
    infos = list(infos)
    by_module: dict[str, PluginInfo] = {}
    for info in infos:
        by_module.setdefault(info.cls.__module__, info)
    frames: list[tuple[Any, int, PluginInfo | None, PluginInfo | None]] = []
    tb: TracebackType | None = error.__traceback__
    while tb is not None:
        frame = tb.tb_frame
        frames.append(
            (
                frame,
                tb.tb_lineno,
                _instance_plugin(frame.f_locals.get("self"), infos),
                by_module.get(frame.f_globals.get("__name__", "")),
            )
        )
        tb = tb.tb_next
    culprit = next((by_self for _, _, by_self, _ in frames if by_self), None) or next(
        (by_mod for _, _, _, by_mod in frames if by_mod), None
    )
    if culprit is None:
        return None
    frame, line = next(
        (f, n) for f, n, by_self, by_mod in reversed(frames) if culprit in (by_self, by_mod)
    )
    where = f"{frame.f_code.co_filename}:{line} in {frame.f_code.co_name}()"
    return PluginRuntimeError(culprit, error, where)


def _instance_plugin(this: Any, infos: list[PluginInfo]) -> PluginInfo | None:
    if this is None:
        return None
    exact = next((i for i in infos if type(this) is i.cls), None)
    return exact or next((i for i in infos if isinstance(this, i.cls)), None)


class blame_plugins:
    """``with blame_plugins(infos): …`` re-raises an exception from plugin code as a
    :class:`PluginRuntimeError` naming the plugin (chained to the original)."""

    def __init__(self, infos: Iterable[PluginInfo]) -> None:
        self.infos = list(infos)

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc is None:
            return None
        failure = plugin_failure(exc, self.infos)
        if failure is not None:
            raise failure from exc
        return None
