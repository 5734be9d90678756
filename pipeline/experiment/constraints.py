"""``constraints:``: several constraint plugins on one critic, as an experiment file gives them.

A mapping from plugin name to that plugin's settings, in the order they apply
(``constraints: {spectral_norm: {}, gradient_penalty: {weight: 1}}``), so that
``constraints.gradient_penalty.weight`` is a dotted key like any other. The choices made
here become one constraint in :func:`pipeline.training.constraints.build_constraint`.
"""

from __future__ import annotations

from typing import Any

from pipeline.errors import ConfigError, PluginError
from pipeline.host.choice import PluginChoice, choose
from pipeline.host.registry import PluginInfo, Registry
from pipeline.types import KINDS

#: several constraints on one critic, by plugin name (instead of the one ``constraint``)
STACKED_CONSTRAINTS = "constraints"


def validate_constraints(data: dict[str, Any], registry: Registry) -> dict[str, PluginChoice]:
    """``constraints:``, several constraint plugins on one critic: a mapping from plugin name
    to that plugin's settings, in the order they apply. Each becomes the plugin choice of
    section ``constraints.<name>`` (so its MLflow tag is ``plugin.constraints.<name>``)."""
    if data.get("constraint") is not None:
        raise ConfigError(
            STACKED_CONSTRAINTS,
            "given together with 'constraint:'; use 'constraint:' for one plugin or "
            "'constraints:' for several, not both (-o constraints=null drops the file's)",
        )
    node = data[STACKED_CONSTRAINTS]
    example = "e.g. {spectral_norm: {}, gradient_penalty: {weight: 1}}"
    if not isinstance(node, dict) or not node:
        raise ConfigError(
            STACKED_CONSTRAINTS,
            f"must be a non-empty mapping from constraint names to their settings, {example}; "
            f"got {node!r}",
        )
    if isinstance(node.get("name"), str):
        raise ConfigError(
            f"{STACKED_CONSTRAINTS}.name",
            f"'constraints:' is keyed by plugin name ({example}); one plugin is "
            "'constraint: {name: …}'",
        )
    choices: dict[str, PluginChoice] = {}
    for name, values in node.items():
        section = f"{STACKED_CONSTRAINTS}.{name}"
        if not isinstance(name, str) or "." in name:
            raise ConfigError(
                section,
                "a constraint name here must be a string without '.' (its settings are "
                "named by dotted keys); use 'constraint: {name: …}' for such a plugin",
            )
        info = _stacked_constraint(registry, name, section)
        if not isinstance(values, dict):  # null too: a bare key would read as "off"
            raise ConfigError(
                section,
                f"must be a mapping of {name}'s settings ({{}} for its defaults), got {values!r}",
            )
        choices[section] = choose(section, info, values)
    return choices


def _stacked_constraint(registry: Registry, name: str, section: str) -> PluginInfo:
    """The constraint plugin ``name``; a plugin of another kind is named as such."""
    if registry.has("constraint", name):
        return registry.get("constraint", name)
    others = [kind for kind in KINDS if registry.has(kind, name)]
    if others:
        raise ConfigError(
            section,
            f"{name!r} is a plugin of kind {others[0]}, not a constraint; available: "
            f"{', '.join(registry.names('constraint'))}",
        )
    try:
        return registry.get("constraint", name)
    except PluginError as exc:
        raise ConfigError(section, str(exc)) from None
