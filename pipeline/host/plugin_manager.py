"""Which plugin modules load, and calling their hooks: pluggy's manager for gan-pipeline.

Every module of the ``gan_pipeline`` entry-point group (the built-ins arrive that way too)
is imported and registered by pluggy's ``load_setuptools_entrypoints``; blocked ones are
``set_blocked`` first, so they are never imported and a broken one cannot stop the others.
``--plugin`` modules are imported here and registered the same way.
:meth:`PluginManager.call_hooks` calls one module's ``register_<kind>`` hooks through
pluggy; what they register is the registry's business (:mod:`pipeline.host.registry`).

What loads is controlled by :class:`RegistryOptions` (the CLI's global options and the
environment):

- ``GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD=1`` (``pipeline --no-autoload``): only the
  built-ins (distribution ``gan-pipeline``) are loaded from the entry points;
- ``GAN_PIPELINE_BLOCK=a,b`` (``pipeline --block NAME``, repeatable): never import the
  plugin named ``NAME`` — an entry-point name, a ``--plugin`` module or a whole
  distribution;
- ``GAN_PIPELINE_PLUGINS=mod,other`` (``pipeline --plugin MODULE``, repeatable): also load
  a module that is not installed as a package (a dotted name, or a ``.py`` file).

Every error about a plugin names it with its package and version and says how to block it.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import importlib.metadata
import importlib.util
import os
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pluggy

from pipeline import hookspecs
from pipeline.errors import PluginError
from pipeline.types import KINDS, KindSpec

BUILTIN_DISTRIBUTION = "gan-pipeline"

#: set to 1 (true, yes, on) to load only the built-ins from the entry points
AUTOLOAD_ENV = "GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD"
#: comma-separated names never to load (entry-point names, modules or distributions)
BLOCK_ENV = "GAN_PIPELINE_BLOCK"
#: comma-separated modules (or ``.py`` files) to load besides the entry points
PLUGINS_ENV = "GAN_PIPELINE_PLUGINS"


def canonical_distribution(name: str) -> str:
    """PEP 503 normalization: ``Gan_Pipeline`` → ``gan-pipeline``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def is_builtin(package: str) -> bool:
    return canonical_distribution(package) == BUILTIN_DISTRIBUTION


def describe_origin(package: str, version: str) -> str:
    """``gan-pipeline-extras 0.1.0``, or just the package when there is no version."""
    return f"{package} {version}" if version else package


def block_hint(name: str) -> str:
    """How to run without the plugin ``name``."""
    return f"block it with `pipeline --block {name} …` or {BLOCK_ENV}={name}"


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() not in ("", "0", "false", "no", "off")


def _split(value: str | None) -> tuple[str, ...]:
    return tuple(part.strip() for part in (value or "").split(",") if part.strip())


def _unique(items: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class RegistryOptions:
    """What loads: entry points (or only the built-ins), minus blocked names, plus extra
    modules."""

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
class PluginSource:
    """One registered plugin module (or object) and what it implements."""

    name: str
    package: str
    version: str
    #: hooks of the contract it implements
    hooks: tuple[str, ...]
    #: hook implementations that match no hook of the contract (what pluggy's
    #: ``check_pending`` would refuse)
    unknown_hooks: tuple[str, ...] = ()

    @property
    def origin(self) -> str:
        return describe_origin(self.package, self.version)


@dataclass(frozen=True)
class SkippedPlugin:
    """An entry point or module that was not loaded, and why."""

    name: str
    package: str
    version: str
    reason: str


@functools.cache
def distribution_origin(dist: importlib.metadata.Distribution) -> tuple[str, str]:
    """(name, version) of an installed distribution, its METADATA parsed once (each
    ``dist.name`` or ``dist.version`` parses the whole file again: 2 ms for gan-pipeline's)."""
    metadata = dist.metadata
    return metadata["Name"], metadata["Version"]


def _builtins_first(ep: importlib.metadata.EntryPoint) -> tuple[bool, str, str]:
    package = distribution_origin(ep.dist)[0]
    return (not is_builtin(package), package, ep.name)


class PluginManager(pluggy.PluginManager):
    """pluggy's plugin manager for the hooks of :mod:`pipeline.hookspecs`, loading what
    its :class:`RegistryOptions` say and remembering each module's package and version."""

    def __init__(self, options: RegistryOptions | None = None) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.options = options if options is not None else RegistryOptions()
        for name in self.options.blocked:
            self.set_blocked(name)
        #: entry points and modules not loaded (blocked, or autoload off)
        self.skipped: list[SkippedPlugin] = []
        #: (package, version) of the modules not loaded from an entry point
        self._origins: dict[str, tuple[str, str]] = {}

    # -- loading ---------------------------------------------------------------
    def load_entry_points(self) -> list[str]:
        """Import and register every module of the entry-point group that is neither
        blocked nor (autoload off) third-party; returns their names, built-ins first (so a
        third-party plugin reusing a built-in name is the one named as the culprit)."""
        group = hookspecs.ENTRY_POINT_GROUP
        # one per distribution, in the order pluggy loads them
        eps = list(importlib.metadata.entry_points(group=group))
        ordered = sorted(eps, key=_builtins_first)
        self._refuse_shared_names(ordered)
        blocked_packages = {canonical_distribution(name) for name in self.options.blocked}
        for ep in ordered:
            package, version = distribution_origin(ep.dist)
            if ep.name in self.options.blocked or (
                canonical_distribution(package) in blocked_packages
            ):
                reason = "blocked"
            elif not self.options.autoload and not is_builtin(package):
                reason = f"autoload off ({AUTOLOAD_ENV})"
            else:
                continue
            self.set_blocked(ep.name)
            self.skipped.append(SkippedPlugin(ep.name, package, version, reason))
        before = {name for name, _ in self.list_name_plugin()}
        try:
            self.load_setuptools_entrypoints(group)
        except Exception as exc:
            # pluggy registers each module before loading the next: the culprit is the
            # first entry point neither registered nor blocked
            ep = next(
                (e for e in eps if not self.has_plugin(e.name) and not self.is_blocked(e.name)),
                None,
            )
            if ep is None:
                raise
            where = f"plugin {ep.name!r} ({describe_origin(*distribution_origin(ep.dist))})"
            if isinstance(exc, pluggy.PluginValidationError):
                raise _contract_error(where, exc, ep.name) from None
            raise PluginError(
                f"{where} failed to import {ep.value!r}: {type(exc).__name__}: {exc}; "
                f"{block_hint(ep.name)}"
            ) from exc
        return [ep.name for ep in ordered if ep.name not in before and self.has_plugin(ep.name)]

    def _refuse_shared_names(self, eps: list[importlib.metadata.EntryPoint]) -> None:
        first: dict[str, importlib.metadata.EntryPoint] = {}
        for ep in eps:
            taken = first.setdefault(ep.name, ep)
            if taken is not ep:
                package, version = distribution_origin(ep.dist)
                raise PluginError(
                    f"two packages name an entry point {ep.name!r} in group "
                    f"{hookspecs.ENTRY_POINT_GROUP!r}: "
                    f"{describe_origin(*distribution_origin(taken.dist))} and "
                    f"{describe_origin(package, version)}; {block_hint(package)} "
                    f"(a package name blocks all its plugins)"
                )

    def load_module(self, spec: str) -> str | None:
        """Import and register a module that is not installed as a package (``--plugin``):
        a dotted module name, importable from ``sys.path`` or the current directory, or the
        path of a ``.py`` file. Returns its plugin name; None when it is blocked or
        registered already (through its entry point)."""
        path = Path(spec)
        name = path.stem if spec.endswith(".py") else spec
        if self.is_blocked(spec) or self.is_blocked(name):
            self.skipped.append(SkippedPlugin(name, "local", "", "blocked"))
            return None
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
        if self.is_registered(module):
            return None
        return self.add(module, name, *_module_distribution(module))

    def add(
        self, plugin: object, name: str | None = None, package: str = "local", version: str = ""
    ) -> str | None:
        """Register one plugin module (or object); returns its name, None when blocked."""
        label = name or getattr(plugin, "__name__", None) or type(plugin).__name__
        where = f"plugin {label!r} ({describe_origin(package, version)})"
        try:
            registered = self.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            raise _contract_error(where, exc, label) from None
        except ValueError as exc:  # the name or the module is registered already
            raise PluginError(f"{where} cannot be registered: {exc}") from None
        if registered is None:
            self.skipped.append(SkippedPlugin(label, package, version, "blocked"))
            return None
        self._origins[registered] = (package, version)
        return registered

    # -- calling hooks ----------------------------------------------------------
    def call_hooks(self, name: str, register: Callable[[KindSpec, object], None]) -> None:
        """Call the ``register_<kind>`` hooks of the plugin ``name`` through pluggy (its
        hook ordering, wrappers and tracing apply), each with ``register`` bound to its
        kind. An exception from the hook becomes a :class:`PluginError` naming the plugin."""
        plugin = self.get_plugin(name)
        others = [p for p in self.get_plugins() if p is not plugin and p is not None]
        where = f"plugin {name!r} ({describe_origin(*self.origin(name))})"
        for kind in KINDS.values():
            hook = self.subset_hook_caller(kind.hook, remove_plugins=others)
            try:
                hook(register=functools.partial(register, kind))
            except PluginError:
                raise
            except Exception as exc:
                raise PluginError(
                    f"{where} raised in its hook {kind.hook}: {type(exc).__name__}: {exc}; "
                    f"{block_hint(name)}"
                ) from exc

    # -- reports ------------------------------------------------------------------
    def origin(self, name: str) -> tuple[str, str]:
        """(package, version) of the registered plugin ``name``."""
        if name in self._origins:
            return self._origins[name]
        plugin = self.get_plugin(name)
        dist = next((d for p, d in self.list_plugin_distributions() if p is plugin), None)
        return distribution_origin(dist) if dist is not None else ("local", "")

    def source(self, name: str) -> PluginSource:
        """The registered plugin ``name``, its origin and the hooks it implements."""
        plugin = self.get_plugin(name)
        callers = self.get_hookcallers(plugin) or []
        known = tuple(sorted(c.name for c in callers if c.has_spec()))
        unknown = tuple(
            sorted(
                c.name
                for c in callers
                if not c.has_spec()
                and any(not i.optionalhook for i in c.get_hookimpls() if i.plugin is plugin)
            )
        )
        return PluginSource(name, *self.origin(name), known, unknown)

    def sources(self) -> list[PluginSource]:
        """Every registered plugin module, in the order they registered."""
        return [self.source(name) for name, plugin in self.list_name_plugin() if plugin is not None]

    def problems(self) -> list[str]:
        """Warnings about what loaded: hook implementations that match no hook of the
        contract (every one, where pluggy's ``check_pending`` raises on the first), and
        blocked names that match nothing."""
        out = []
        contract = [kind.hook for kind in KINDS.values()]
        for source in self.sources():
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


def _contract_error(where: str, exc: pluggy.PluginValidationError, name: str) -> PluginError:
    return PluginError(
        f"{where} has a hook implementation that does not fit the contract "
        f"(pipeline/hookspecs.py): {exc}; {block_hint(name)}"
    )


def _module_distribution(module: object) -> tuple[str, str]:
    """The installed distribution a ``--plugin`` module belongs to, else ``("local", "")``."""
    top = (getattr(module, "__name__", "") or "").split(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    if len(dists) == 1 and top not in ("__main__", ""):
        try:
            return distribution_origin(importlib.metadata.distribution(dists[0]))
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
