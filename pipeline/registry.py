"""The plugin registry: the one place that maps a name to a plugin class.

It owns the pluggy plugin manager, loads every module of the ``gan_pipeline``
entry-point group (the built-ins arrive that way too) and asks each module's hooks
for what it registers, remembering which module and package each class came from.
The rest of the code never touches pluggy directly.

What loads is controlled by :class:`RegistryOptions` (the CLI's global options and the
environment):

- ``GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD=1`` (``pipeline --no-autoload``): only the
  built-ins (distribution ``gan-pipeline``) are loaded from the entry points;
- ``GAN_PIPELINE_BLOCK=a,b`` (``pipeline --block NAME``, repeatable): never import the
  plugin named ``NAME`` — an entry-point name, a ``--plugin`` module or a whole
  distribution;
- ``GAN_PIPELINE_PLUGINS=mod,other`` (``pipeline --plugin MODULE``, repeatable): also load
  a module that is not installed as a package (a dotted name, or a ``.py`` file).

Every error about a plugin names it with its package and version and says how to block
it; a blocked plugin is never imported, so a broken one cannot stop the others.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import pluggy

from pipeline import hookspecs
from pipeline.errors import PipelineError, PluginError
from pipeline.types import BASE_CLASSES, KINDS, Kind, Plugin, Settings

BUILTIN_DISTRIBUTION = "gan-pipeline"

#: set to 1 (true, yes, on) to load only the built-ins from the entry points
AUTOLOAD_ENV = "GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD"
#: comma-separated names never to load (entry-point names, modules or distributions)
BLOCK_ENV = "GAN_PIPELINE_BLOCK"
#: comma-separated modules (or ``.py`` files) to load besides the entry points
PLUGINS_ENV = "GAN_PIPELINE_PLUGINS"

#: methods each kind must override (the base class only raises NotImplementedError)
REQUIRED_METHODS: dict[Kind, tuple[str, ...]] = {
    "loss": ("critic_loss", "generator_loss"),
    "constraint": (),
    "optimizer": ("build",),
    "dataset": ("sample",),
    "model": ("build",),
    "metric": ("compute",),
}
#: a plugin name is what experiment files, search spaces and MLflow tags use
NAME_PATTERN = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")


def canonical_distribution(name: str) -> str:
    """PEP 503 normalization: ``Gan_Pipeline`` → ``gan-pipeline``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


def block_hint(name: str) -> str:
    """How to run without the plugin ``name``."""
    return f"block it with `pipeline --block {name} …` or {BLOCK_ENV}={name}"


@dataclass(frozen=True)
class RegistryOptions:
    """What the registry loads: entry points (or only the built-ins), minus blocked names,
    plus extra modules."""

    #: load third-party entry points (the built-ins always load unless blocked)
    autoload: bool = True
    #: entry-point names, ``--plugin`` modules or distributions never to import
    blocked: tuple[str, ...] = ()
    #: extra modules (dotted names or ``.py`` paths) to load, in order
    modules: tuple[str, ...] = ()

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        block: Iterable[str] = (),
        plugins: Iterable[str] = (),
        autoload: bool | None = None,
    ) -> RegistryOptions:
        """The environment's settings plus explicit ones (the CLI's global options).

        ``block`` and ``plugins`` add to ``GAN_PIPELINE_BLOCK`` / ``GAN_PIPELINE_PLUGINS``;
        ``autoload``, when given, wins over ``GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD``.
        """
        env = os.environ if environ is None else environ
        if autoload is None:
            autoload = not _truthy(env.get(AUTOLOAD_ENV))
        return cls(
            autoload=autoload,
            blocked=_unique((*_split(env.get(BLOCK_ENV)), *block)),
            modules=_unique((*_split(env.get(PLUGINS_ENV)), *plugins)),
        )


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
        return canonical_distribution(self.package) == BUILTIN_DISTRIBUTION

    @property
    def origin(self) -> str:
        return f"{self.package} {self.version}" if self.version else self.package

    def describe(self) -> str:
        """``constraint 'r1' (gan-pipeline-extras 0.1.0)``."""
        return f"{self.kind} {self.name!r} ({self.origin})"


@dataclass(frozen=True)
class PluginSource:
    """One loaded plugin module (or object) and what it implements."""

    name: str
    package: str
    version: str
    #: hooks of the contract it implements
    hooks: tuple[str, ...]
    #: hook implementations that match no hook of the contract (pluggy's check_pending)
    unknown_hooks: tuple[str, ...] = ()

    @property
    def origin(self) -> str:
        return f"{self.package} {self.version}" if self.version else self.package


@dataclass(frozen=True)
class SkippedPlugin:
    """An entry point or module that was not loaded, and why."""

    name: str
    package: str
    version: str
    reason: str


class PluginRuntimeError(PluginError):
    """Plugin code raised while an experiment was built or trained."""

    exit_code = 1

    def __init__(self, info: PluginInfo, error: BaseException, where: str) -> None:
        self.info = info
        self.error = error
        self.where = where
        super().__init__(
            f"{info.describe()} raised {type(error).__name__}: {error} (at {where}); "
            f"pick another {info.kind}, or {block_hint(info.module)}"
        )


class Registry:
    """Every registered plugin, by kind and name.

    ``Registry()`` loads nothing; :meth:`load` (or :meth:`load_entry_points`) loads what
    its :class:`RegistryOptions` say. :func:`default_registry` is the process-wide one.
    """

    def __init__(self, options: RegistryOptions | None = None) -> None:
        self.options = options if options is not None else RegistryOptions()
        self.manager = pluggy.PluginManager(hookspecs.PROJECT)
        self.manager.add_hookspecs(hookspecs)
        for name in self.options.blocked:
            self.manager.set_blocked(name)
        self._plugins: dict[Kind, dict[str, PluginInfo]] = {kind: {} for kind in KINDS}
        self._sources: dict[str, PluginSource] = {}
        #: entry points and modules not loaded (blocked, or autoload off)
        self.skipped: list[SkippedPlugin] = []
        self._lock = threading.RLock()

    # -- loading --------------------------------------------------------------
    def load(self) -> Registry:
        """Load the entry points, then the extra modules of the options."""
        self.load_entry_points()
        for module in self.options.modules:
            self.load_module(module)
        return self

    def is_blocked(self, *names: str) -> bool:
        blocked = {canonical_distribution(b) for b in self.options.blocked}
        blocked |= set(self.options.blocked)
        return any(n in blocked or canonical_distribution(n) in blocked for n in names if n)

    def load_entry_points(self) -> None:
        """Import every module of the entry-point group and register it.

        The built-ins come first, so a third-party plugin reusing a built-in name is the
        one named as the culprit. Blocked entry points are never imported.
        """
        eps = list(importlib.metadata.entry_points(group=hookspecs.ENTRY_POINT_GROUP))

        def order(ep: importlib.metadata.EntryPoint) -> tuple[bool, str, str]:
            package = _dist_name(ep)
            return (canonical_distribution(package) != BUILTIN_DISTRIBUTION, package, ep.name)

        for ep in sorted(eps, key=order):
            package, version = _dist_name(ep), _dist_version(ep)
            builtin = canonical_distribution(package) == BUILTIN_DISTRIBUTION
            if self.is_blocked(ep.name, package):
                self.skipped.append(SkippedPlugin(ep.name, package, version, "blocked"))
                continue
            if not builtin and not self.options.autoload:
                self.skipped.append(
                    SkippedPlugin(ep.name, package, version, f"autoload off ({AUTOLOAD_ENV})")
                )
                continue
            taken = self._sources.get(ep.name)
            if taken is not None:
                if canonical_distribution(taken.package) == canonical_distribution(package):
                    continue  # the same distribution seen twice on sys.path
                raise PluginError(
                    f"two packages name an entry point {ep.name!r} in group "
                    f"{hookspecs.ENTRY_POINT_GROUP!r}: {taken.origin} and {package} {version}; "
                    f"{block_hint(package)} (a package name blocks all its plugins)"
                )
            try:
                module = ep.load()
            except Exception as exc:  # name the culprit, whatever it raised
                raise PluginError(
                    f"plugin {ep.name!r} ({package} {version}) failed to import "
                    f"{ep.value!r}: {type(exc).__name__}: {exc}; {block_hint(ep.name)}"
                ) from exc
            self.add_module(module, name=ep.name, package=package, version=version)

    def load_module(self, spec: str) -> list[PluginInfo]:
        """Import a module that is not installed as a package (``--plugin``) and register it.

        ``spec`` is a dotted module name, importable from ``sys.path`` or the current
        directory, or the path of a ``.py`` file.
        """
        path = Path(spec)
        name = path.stem if spec.endswith(".py") else spec
        if self.is_blocked(spec, name):
            self.skipped.append(SkippedPlugin(name, "local", "", "blocked"))
            return []
        try:
            if spec.endswith(".py"):
                module = _import_file(path)
            else:
                if os.getcwd() not in sys.path and "" not in sys.path:
                    sys.path.append(os.getcwd())
                module = importlib.import_module(spec)
        except Exception as exc:
            raise PluginError(
                f"plugin module {spec!r} (from --plugin or {PLUGINS_ENV}) failed to import: "
                f"{type(exc).__name__}: {exc}; drop it from --plugin/{PLUGINS_ENV}"
            ) from exc
        if self.manager.is_registered(module):
            return []  # already loaded through its entry point
        package, version = _module_distribution(module)
        return self.add_module(module, name=name, package=package, version=version)

    def add_module(
        self,
        module: ModuleType | object,
        *,
        name: str | None = None,
        package: str = "local",
        version: str = "",
    ) -> list[PluginInfo]:
        """Register one plugin module (or object) and collect what its hooks register.

        All or nothing: if anything it registers is refused, the module is unregistered
        again and :class:`PluginError` names it. Returns what it registered (nothing when
        the name is blocked).
        """
        label = name or getattr(module, "__name__", None) or type(module).__name__
        origin = f"{package} {version}" if version else package
        where = f"plugin {label!r} ({origin})"
        with self._lock:
            if name is not None and self.manager.is_blocked(name):
                self.skipped.append(SkippedPlugin(name, package, version, "blocked"))
                return []
            try:
                plugin_name = self.manager.register(module, name=name)
            except pluggy.PluginValidationError as exc:
                raise PluginError(
                    f"{where} has a hook implementation that does not fit the contract "
                    f"(pipeline/hookspecs.py): {exc}; {block_hint(label)}"
                ) from None
            except ValueError as exc:  # the name or the module is registered already
                raise PluginError(f"{where} cannot be registered: {exc}") from None
            if plugin_name is None:  # blocked
                self.skipped.append(SkippedPlugin(label, package, version, "blocked"))
                return []
            try:
                infos = self._collect(module, plugin_name, package, version)
            except BaseException:
                self.manager.unregister(name=plugin_name)
                raise
            for info in infos:
                self._plugins[info.kind][info.name] = info
            known, unknown = self._hooks_of(module)
            self._sources[plugin_name] = PluginSource(plugin_name, package, version, known, unknown)
            return infos

    def add_classes(
        self,
        *classes: type[Plugin],
        name: str | None = None,
        package: str = "local",
        version: str = "",
    ) -> list[PluginInfo]:
        """Register plugin classes directly, as if one module's hooks registered them."""
        module = ModuleType(name or "classes:" + ",".join(c.__qualname__ for c in classes))
        for kind in KINDS:
            of_kind = [c for c in classes if getattr(c, "kind", None) == kind]
            if of_kind:
                setattr(module, hookspecs.HOOK_FOR_KIND[kind], _registering(of_kind))
        unknown = [c for c in classes if getattr(c, "kind", None) not in KINDS]
        if unknown:
            bases = ", ".join(b.__name__ for b in BASE_CLASSES.values())
            raise PluginError(
                f"{unknown[0]!r} is not a plugin class: it has no kind (subclass one of "
                f"pipeline.types {bases})"
            )
        return self.add_module(module, name=module.__name__, package=package, version=version)

    def unregister(self, name: str) -> list[PluginInfo]:
        """Remove the plugin module ``name`` and every class it registered."""
        with self._lock:
            if self.manager.get_plugin(name) is None:
                raise PluginError(f"no plugin module {name!r} is registered")
            self.manager.unregister(name=name)
            self._sources.pop(name, None)
            removed = []
            for kind in KINDS:
                for key, info in list(self._plugins[kind].items()):
                    if info.module == name:
                        removed.append(self._plugins[kind].pop(key))
            return removed

    def _collect(
        self, module: object, plugin_name: str, package: str, version: str
    ) -> list[PluginInfo]:
        """Call the module's hooks and validate every class they register."""
        hooks, _ = self._hooks_of(module)
        origin = f"{package} {version}" if version else package
        where = f"plugin {plugin_name!r} ({origin})"
        hint = block_hint(plugin_name)
        found: list[PluginInfo] = []

        for kind in KINDS:
            hook_name = hookspecs.HOOK_FOR_KIND[kind]
            for impl in getattr(self.manager.hook, hook_name).get_hookimpls():
                if impl.plugin_name != plugin_name:
                    continue

                def register(cls: Any, kind: Kind = kind) -> None:
                    _check_class(cls, kind, where, hint)
                    name = cls.name
                    taken = self._plugins[kind].get(name) or next(
                        (i for i in found if i.kind == kind and i.name == name), None
                    )
                    if taken is not None:
                        raise PluginError(
                            f"two plugins claim the {kind} name {name!r}: "
                            f"{taken.cls.__qualname__} from {taken.module} ({taken.origin}) and "
                            f"{cls.__qualname__} from {plugin_name} ({origin}); rename "
                            f"one, or {hint}"
                        )
                    found.append(
                        PluginInfo(
                            kind=kind,
                            name=name,
                            cls=cls,
                            module=plugin_name,
                            package=package,
                            version=version,
                            hooks=hooks,
                        )
                    )

                kwargs = {"register": register} if "register" in impl.argnames else {}
                try:
                    impl.function(**kwargs)
                except PluginError:
                    raise
                except Exception as exc:
                    raise PluginError(
                        f"{where} raised in its hook {hook_name}: "
                        f"{type(exc).__name__}: {exc}; {hint}"
                    ) from exc
        return found

    def _hooks_of(self, module: object) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """(hooks of the contract it implements, implementations matching no hook).

        The second part is what pluggy's ``check_pending`` refuses, kept per plugin so
        every one is reported instead of the first raising.
        """
        callers = self.manager.get_hookcallers(module) or []
        known = tuple(sorted(c.name for c in callers if c.has_spec()))
        unknown = tuple(
            sorted(
                c.name
                for c in callers
                if not c.has_spec()
                and any(not i.optionalhook for i in c.get_hookimpls() if i.plugin is module)
            )
        )
        return known, unknown

    # -- reports --------------------------------------------------------------
    def sources(self) -> list[PluginSource]:
        """Every loaded plugin module, in load order."""
        return list(self._sources.values())

    def problems(self) -> list[str]:
        """Warnings about what loaded: unknown hooks, blocked names that match nothing."""
        out = []
        contract = list(hookspecs.HOOK_FOR_KIND.values())
        for source in self._sources.values():
            for hook in source.unknown_hooks:
                close = difflib.get_close_matches(hook, contract, n=1)
                guess = f" (did you mean {close[0]}?)" if close else ""
                out.append(
                    f"plugin {source.name!r} ({source.origin}) implements {hook!r}, which "
                    f"matches no hook of the contract{guess}; known hooks: {', '.join(contract)}"
                )
        seen = {s.name for s in self.skipped} | {
            canonical_distribution(s.package) for s in self.skipped
        }
        for name in self.options.blocked:
            if name not in seen and canonical_distribution(name) not in seen:
                out.append(f"blocked name {name!r} matches no installed plugin or package")
        return out

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


# -- validating what a hook registers ------------------------------------------------


def _check_class(cls: Any, kind: Kind, where: str, hint: str) -> None:
    base = BASE_CLASSES[kind]
    if isinstance(cls, Plugin):
        raise PluginError(
            f"{where} registered an instance of {type(cls).__qualname__} as a {kind}; "
            f"register the class itself; {hint}"
        )
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(
            f"{where} registered {cls!r} as a {kind}, but it is not a subclass of "
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
    missing = [m for m in REQUIRED_METHODS[kind] if getattr(cls, m) is getattr(base, m)]
    if missing:
        raise PluginError(
            f"{label} ({kind} {name!r}), which lacks what a {kind} requires: it does not "
            f"implement {', '.join(missing)} (see pipeline.types.{base.__name__}); {hint}"
        )
    settings = getattr(cls, "Settings", None)
    if not (isinstance(settings, type) and issubclass(settings, Settings)):
        raise PluginError(
            f"{label} ({kind} {name!r}) whose Settings is {settings!r}, not a subclass of "
            f"pipeline.types.Settings; {hint}"
        )
    if not isinstance(getattr(cls, "description", ""), str):
        raise PluginError(f"{label} ({kind} {name!r}) whose description is not a string; {hint}")


def _registering(classes: list[type[Plugin]]):
    @hookspecs.hookimpl
    def register_hook(register):
        for cls in classes:
            register(cls)

    return register_hook


# -- where a module comes from ------------------------------------------------------


def _dist_name(ep: importlib.metadata.EntryPoint) -> str:
    return ep.dist.metadata["Name"] if ep.dist is not None else "unknown"


def _dist_version(ep: importlib.metadata.EntryPoint) -> str:
    return ep.dist.version if ep.dist is not None else "unknown"


def _module_distribution(module: object) -> tuple[str, str]:
    """The installed distribution a ``--plugin`` module belongs to, else ``("local", "")``."""
    top = (getattr(module, "__name__", "") or "").split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    if len(dists) == 1 and top not in ("__main__", ""):
        try:
            dist = importlib.metadata.distribution(dists[0])
            return dist.metadata["Name"], dist.version
        except importlib.metadata.PackageNotFoundError:
            pass
    return "local", ""


def _import_file(path: Path) -> ModuleType:
    if not path.is_file():
        raise FileNotFoundError(f"no file {str(path)!r}")
    name = path.stem
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {str(path)!r}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


# -- naming the plugin an exception came from ------------------------------------------


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
