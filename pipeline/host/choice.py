"""A plugin an experiment picks, with its settings validated by the plugin's ``Settings``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from pipeline.errors import ConfigError
from pipeline.host.registry import PluginInfo
from pipeline.types import Settings


@dataclass(frozen=True)
class PluginChoice:
    """A plugin picked by an experiment, with its validated settings."""

    section: str
    info: PluginInfo
    settings: Settings

    def instantiate(self) -> Any:
        return self.info.cls(self.settings)


def choose(section: str, info: PluginInfo, values: dict[str, Any]) -> PluginChoice:
    """``info`` with ``values`` validated by its ``Settings``; a bad value is one
    :class:`ConfigError` naming ``<section>.<field>``."""
    try:
        settings = info.cls.Settings.model_validate(values)
    except ValidationError as exc:
        raise settings_error(section, exc, info.cls.Settings) from None
    return PluginChoice(section=section, info=info, settings=settings)


def settings_error(prefix: str, exc: ValidationError, model: type[BaseModel]) -> ConfigError:
    """The first error of a pydantic model, named by its dotted field under ``prefix``."""
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    dotted = f"{prefix}.{loc}" if loc else prefix
    if err["type"] == "extra_forbidden":
        allowed = ", ".join(sorted(model.model_fields)) or "none"
        return ConfigError(dotted, f"unknown key (allowed here: {allowed})")
    got = err.get("input")
    return ConfigError(dotted, f"{err['msg']} (got {got!r})")
