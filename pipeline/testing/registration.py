"""Registering plugin classes (or hook modules) for the length of a test."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from pipeline.host.registry import PluginInfo, Registry, default_registry
from pipeline.types import Plugin

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
