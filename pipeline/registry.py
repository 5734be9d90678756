"""The plugin registry: the one place that maps a name to a plugin class.

It owns the pluggy plugin manager, loads every module of the ``gan_pipeline``
entry-point group (the built-ins arrive that way too) and asks each module's hooks
for what it registers, remembering which module and package each class came from.
The rest of the code never touches pluggy directly.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import pluggy

from pipeline import hookspecs
from pipeline.errors import PluginError
from pipeline.types import BASE_CLASSES, KINDS, Kind, Plugin

BUILTIN_DISTRIBUTION = "gan-pipeline"


@dataclass(frozen=True)
class PluginInfo:
    """A registered plugin class and where it comes from."""

    kind: Kind
    name: str
    cls: type[Plugin]
    module: str
    package: str
    version: str
    hooks: tuple[str, ...] = field(default=())

    @property
    def builtin(self) -> bool:
        return self.package == BUILTIN_DISTRIBUTION

    @property
    def origin(self) -> str:
        return f"{self.package} {self.version}"


class Registry:
    """Every registered plugin, by kind and name."""

    def __init__(self) -> None:
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        self._plugins: dict[Kind, dict[str, PluginInfo]] = {kind: {} for kind in KINDS}
        self._dists: dict[str, tuple[str, str]] = {}

    # -- loading --------------------------------------------------------------
    def load_entry_points(self) -> None:
        """Import every module of the entry-point group and register it."""
        for ep in importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP):
            if self.manager.get_plugin(ep.name) is not None:
                continue
            dist = ep.dist
            package = dist.metadata["Name"] if dist is not None else "unknown"
            version = dist.version if dist is not None else "unknown"
            try:
                module = ep.load()
            except Exception as exc:  # name the culprit, whatever it raised
                raise PluginError(
                    f"plugin {ep.name!r} ({package} {version}) failed to import: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            self.add_module(module, name=ep.name, package=package, version=version)

    def add_module(
        self,
        module: ModuleType | object,
        *,
        name: str | None = None,
        package: str = "local",
        version: str = "",
    ) -> None:
        """Register one plugin module (or object) and collect what its hooks register."""
        plugin_name = self.manager.register(module, name=name)
        assert plugin_name is not None
        self._dists[plugin_name] = (package, version)
        for kind in KINDS:
            hook_name = hookspecs.HOOK_FOR_KIND[kind]
            for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
                if impl.plugin_name != plugin_name:
                    continue
                impl.function(register=self._registrar(kind, plugin_name, module))
        self.manager.check_pending()

    def _registrar(self, kind: Kind, plugin_name: str, module: Any):
        package, version = self._dists[plugin_name]
        hooks = tuple(
            impl_name
            for impl_name in hookspecs.HOOK_FOR_KIND.values()
            if hasattr(module, impl_name)
        )

        def register(cls: type[Plugin]) -> None:
            base = BASE_CLASSES[kind]
            if not (isinstance(cls, type) and issubclass(cls, base)):
                raise PluginError(
                    f"plugin {plugin_name!r} ({package} {version}) registered {cls!r} as a "
                    f"{kind}, but it is not a subclass of pipeline.types.{base.__name__}"
                )
            name = getattr(cls, "name", None)
            if not isinstance(name, str) or not name:
                raise PluginError(
                    f"plugin {plugin_name!r} ({package} {version}) registered {cls.__name__} "
                    f"without a 'name'"
                )
            taken = self._plugins[kind].get(name)
            if taken is not None:
                raise PluginError(
                    f"two plugins claim the {kind} name {name!r}: {taken.cls.__qualname__} "
                    f"from {taken.module} ({taken.origin}) and {cls.__qualname__} from "
                    f"{plugin_name} ({package} {version})"
                )
            self._plugins[kind][name] = PluginInfo(
                kind=kind,
                name=name,
                cls=cls,
                module=plugin_name,
                package=package,
                version=version,
                hooks=hooks,
            )

        return register

    # -- lookup ---------------------------------------------------------------
    def names(self, kind: Kind) -> list[str]:
        return sorted(self._plugins[kind])

    def get(self, kind: Kind, name: str) -> PluginInfo:
        try:
            return self._plugins[kind][name]
        except KeyError:
            raise PluginError(
                f"unknown {kind} {name!r}; available: {', '.join(self.names(kind)) or 'none'}"
            ) from None

    def has(self, kind: Kind, name: str) -> bool:
        return name in self._plugins[kind]

    def all(self) -> list[PluginInfo]:
        return [info for kind in KINDS for _, info in sorted(self._plugins[kind].items())]


_default: Registry | None = None


def default_registry() -> Registry:
    """The process-wide registry, loaded once from the entry points."""
    global _default
    if _default is None:
        registry = Registry()
        registry.load_entry_points()
        _default = registry
    return _default
