"""The plugin registry: the one place that maps a kind and a name to a plugin class.

Its :class:`~pipeline.host.plugin_manager.PluginManager` loads the plugin modules (entry points,
``--plugin`` modules; blocking and the off switch are there) and calls each module's
``register_<kind>`` hooks; the registry checks every class a hook registers and keeps it
under its name, with the module, package and version it came from. A module registers all
its classes or none: if one is refused, the module is unregistered again and the
:class:`PluginError` names it, its package and version, and how to block it.

:func:`default_registry` is the process-wide registry the ``pipeline`` commands use.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from pipeline import hookspecs
from pipeline.errors import PluginError
from pipeline.host.plugin_manager import (
    PluginManager,
    PluginSource,
    RegistryOptions,
    SkippedPlugin,
    block_hint,
    describe_origin,
    is_builtin,
)
from pipeline.types import KINDS, Kind, KindSpec, Plugin, Settings, kind_of

__all__ = [
    "PluginInfo",
    "Registry",
    "RegistryOptions",
    "configure_default_registry",
    "default_registry",
    "reset_default_registry",
]

#: a plugin name is what experiment files, search spaces and MLflow tags use
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


@dataclass(frozen=True)
class PluginInfo:
    """A registered plugin class and where it comes from."""

    kind: Kind
    name: str
    cls: type[Plugin]
    #: the name of the module that registered it: its entry-point name, the module
    #: given with ``--plugin``, or the name given to :meth:`Registry.add_module`
    module: str
    package: str
    version: str
    #: the hooks that module implements
    hooks: tuple[str, ...] = field(default=())

    @property
    def builtin(self) -> bool:
        return is_builtin(self.package)

    @property
    def origin(self) -> str:
        return describe_origin(self.package, self.version)

    def describe(self) -> str:
        """``constraint 'r1' (gan-pipeline-extras 0.1.0)``."""
        return f"{self.kind} {self.name!r} ({self.origin})"


class Registry:
    """Every registered plugin, by kind and name.

    ``Registry()`` loads nothing; :meth:`load` (or :meth:`load_entry_points`) loads what
    its :class:`RegistryOptions` say. :func:`default_registry` is the process-wide one.
    """

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self.manager = PluginManager(options)
        self._plugins: dict[Kind, dict[str, PluginInfo]] = {kind: {} for kind in KINDS}
        self._lock = threading.RLock()

    @property
    def options(self) -> RegistryOptions:
        return self.manager.options

    @property
    def skipped(self) -> list[SkippedPlugin]:
        """Entry points and modules not loaded (blocked, or autoload off)."""
        return self.manager.skipped

    # -- loading --------------------------------------------------------------
    def load(self) -> Registry:
        """Load the entry points, then the extra modules of the options."""
        self.load_entry_points()
        for module in self.options.modules:
            self.load_module(module)
        return self

    def load_entry_points(self) -> list[PluginInfo]:
        """Load every module of the entry-point group and register what its hooks
        register, the built-ins first; blocked entry points are never imported."""
        with self._lock:
            return [
                info for name in self.manager.load_entry_points() for info in self._collect(name)
            ]

    def load_module(self, spec: str) -> list[PluginInfo]:
        """Import a module that is not installed as a package (``--plugin``: a dotted
        name or a ``.py`` file) and register what its hooks register."""
        with self._lock:
            name = self.manager.load_module(spec)
            return [] if name is None else self._collect(name)

    def add_module(
        self,
        module: ModuleType | object,
        *,
        name: str | None = None,
        package: str = "local",
        version: str = "",
    ) -> list[PluginInfo]:
        """Register one plugin module (or object) and what its hooks register.

        All or nothing: if anything it registers is refused, the module is unregistered
        again and :class:`PluginError` names it. Returns what it registered (nothing when
        the name is blocked).
        """
        with self._lock:
            registered = self.manager.add(module, name, package, version)
            return [] if registered is None else self._collect(registered)

    def add_classes(
        self,
        *classes: type[Plugin],
        name: str | None = None,
        package: str = "local",
        version: str = "",
    ) -> list[PluginInfo]:
        """Register plugin classes directly, as if one module's hooks registered them."""
        module = ModuleType(name or "classes:" + ",".join(c.__qualname__ for c in classes))
        not_plugins = [c for c in classes if kind_of(c) is None]
        if not_plugins:
            bases = ", ".join(kind.base.__name__ for kind in KINDS.values())
            raise PluginError(
                f"{not_plugins[0]!r} is not a plugin class: it has no kind (subclass one of "
                f"pipeline.types {bases})"
            )
        for kind in KINDS.values():
            of_kind = [c for c in classes if kind_of(c) is kind]
            if of_kind:
                setattr(module, kind.hook, _registering(of_kind))
        return self.add_module(module, name=module.__name__, package=package, version=version)

    def unregister(self, name: str) -> list[PluginInfo]:
        """Remove the plugin module ``name`` and every class it registered."""
        with self._lock:
            if self.manager.get_plugin(name) is None:
                raise PluginError(f"no plugin module {name!r} is registered")
            self.manager.unregister(name=name)
            removed = []
            for kind in KINDS:
                for key, info in list(self._plugins[kind].items()):
                    if info.module == name:
                        removed.append(self._plugins[kind].pop(key))
            return removed

    def _collect(self, name: str) -> list[PluginInfo]:
        """Call the hooks of the registered module ``name`` and keep every class they
        register, or, when one is refused, none of them (and unregister the module)."""
        source = self.manager.source(name)
        where = f"plugin {name!r} ({source.origin})"
        found: list[PluginInfo] = []

        def register(kind: KindSpec, cls: Any) -> None:
            _check_class(cls, kind, where, block_hint(name))
            taken = self._plugins[kind.name].get(cls.name) or next(
                (i for i in found if i.kind == kind.name and i.name == cls.name), None
            )
            if taken is not None:
                raise PluginError(
                    f"two plugins claim the {kind.name} name {cls.name!r}: "
                    f"{taken.cls.__qualname__} from {taken.module} ({taken.origin}) and "
                    f"{cls.__qualname__} from {name} ({source.origin}); rename one, or "
                    f"{block_hint(name)}"
                )
            found.append(
                PluginInfo(
                    kind.name, cls.name, cls, name, source.package, source.version, source.hooks
                )
            )

        try:
            self.manager.call_hooks(name, register)
        except BaseException:
            self.manager.unregister(name=name)
            raise
        for info in found:
            self._plugins[info.kind][info.name] = info
        return found

    # -- reports --------------------------------------------------------------
    def sources(self) -> list[PluginSource]:
        """Every loaded plugin module, in load order."""
        return self.manager.sources()

    def problems(self) -> list[str]:
        """Warnings about what loaded: unknown hooks, blocked names that match nothing."""
        return self.manager.problems()

    # -- lookup ---------------------------------------------------------------
    def names(self, kind: Kind) -> list[str]:
        return sorted(self._plugins[kind])

    def get(self, kind: Kind, name: str) -> PluginInfo:
        try:
            return self._plugins[kind][name]
        except KeyError:
            text = f"unknown {kind} {name!r}; available: {', '.join(self.names(kind)) or 'none'}"
            notes = [s for s in self.skipped if s.name == name]
            notes_text = "; ".join(f"{s.name!r} was not loaded: {s.reason}" for s in notes)
            problems = [p for p in self.problems() if "matches no hook" in p]
            extra = "; ".join(filter(None, [notes_text, *problems]))
            raise PluginError(f"{text} ({extra})" if extra else text) from None

    def has(self, kind: Kind, name: str) -> bool:
        return name in self._plugins[kind]

    def all(self) -> list[PluginInfo]:
        return [info for kind in KINDS for _, info in sorted(self._plugins[kind].items())]

    def info_of(self, cls: type[Plugin]) -> PluginInfo | None:
        """The registration of a class, if it is registered."""
        for info in self.all():
            if info.cls is cls:
                return info
        return None


def _check_class(cls: Any, kind: KindSpec, where: str, hint: str) -> None:
    """Refuse, naming the plugin, what a ``register_<kind>`` hook must not register."""
    base = kind.base
    if isinstance(cls, Plugin):
        raise PluginError(
            f"{where} registered an instance of {type(cls).__qualname__} as a {kind.name}; "
            f"register the class itself; {hint}"
        )
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(
            f"{where} registered {cls!r} as a {kind.name}, but it is not a subclass of "
            f"pipeline.types.{base.__name__}; {hint}"
        )
    label = f"{where} registered {cls.__qualname__}"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"{label} without a 'name' (a class attribute); {hint}")
    if not NAME_PATTERN.match(name):
        raise PluginError(
            f"{label} with the name {name!r}: a name is letters, digits, '_', '-' and '.' "
            f"(it appears in experiment files and MLflow tags); {hint}"
        )
    label = f"{label} ({kind.name} {name!r})"
    missing = sorted(cls.__abstractmethods__)  # what abc refuses to instantiate
    if missing:
        raise PluginError(
            f"{label}, which lacks what a {kind.name} requires: it does not implement "
            f"{', '.join(missing)} (see pipeline.types.{base.__name__}); {hint}"
        )
    settings = getattr(cls, "Settings", None)
    if not (isinstance(settings, type) and issubclass(settings, Settings)):
        raise PluginError(
            f"{label} whose Settings is {settings!r}, not a subclass of "
            f"pipeline.types.Settings; {hint}"
        )
    if not isinstance(getattr(cls, "description", ""), str):
        raise PluginError(f"{label} whose description is not a string; {hint}")


def _registering(classes: list[type[Plugin]]):
    @hookspecs.hookimpl
    def register_hook(register):
        for cls in classes:
            register(cls)

    return register_hook


# -- the process-wide registry -------------------------------------------------------

_default: Registry | None = None
_default_options: RegistryOptions | None = None
_default_lock = threading.Lock()


def configure_default_registry(options: RegistryOptions | None) -> None:
    """Set the options the process-wide registry loads with (``None``: the environment's).

    Nothing loads yet; a loaded registry with other options is dropped, so the next
    :func:`default_registry` call loads again with these.
    """
    global _default, _default_options
    with _default_lock:
        _default_options = options
        if _default is not None and options is not None and _default.options != options:
            _default = None


def default_registry(options: RegistryOptions | None = None) -> Registry:
    """The process-wide registry, loaded once.

    Its options are, in order: ``options`` when given, those set by
    :func:`configure_default_registry` (the CLI's global options), else the
    environment's (:meth:`RegistryOptions.from_env`). Asking again with the same options
    returns the same registry; other options load a new one that replaces it.
    """
    global _default
    with _default_lock:
        wanted = options if options is not None else _default_options
        if _default is not None and (wanted is None or _default.options == wanted):
            return _default
        registry = Registry(wanted or RegistryOptions.from_env())
        registry.load()
        _default = registry
        return registry


def reset_default_registry() -> None:
    """Forget the process-wide registry and its options (the next call loads again)."""
    global _default, _default_options
    with _default_lock:
        _default = None
        _default_options = None
