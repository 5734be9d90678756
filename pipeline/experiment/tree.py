"""The raw experiment tree: reading the YAML file, dotted keys and ``-o`` values.

What :mod:`pipeline.experiment.config` validates starts here: ``load_yaml`` reads a file into
nested dicts, ``parse_override`` reads one ``key.path=value``, ``set_dotted`` and
``get_dotted`` address a section by its dotted key, ``flatten`` turns the tree back into
dotted keys (MLflow params).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError


def load_yaml(path: str | Path, what: str = "experiment file") -> dict[str, Any]:
    """An experiment (or comparison) file as nested dicts; ``name`` defaults to the file's
    stem. ``what`` names the file in errors."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"{what} {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("", f"{path} must hold a mapping of sections, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.steps=2000"`` → ``("train.steps", 2000)``; the value is read as YAML."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError("", f"override {text!r} must look like key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key, value


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``key`` (dotted) in ``data``, creating sections as needed."""
    parts = key.split(".")
    node = data
    for i, part in enumerate(parts[:-1]):
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(".".join(parts[: i + 1]), "is a value, not a section")
        node = child
    node[parts[-1]] = value


def get_dotted(data: dict[str, Any], dotted: str) -> Any:
    """The value at ``dotted`` in ``data``, or None when a part is missing."""
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def param_str(value: Any) -> str:
    """A config value as an MLflow param (lists as ``[a, b]``)."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(param_str(v) for v in value) + "]"
    return str(value)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` → ``{"a.b": 1}`` (lists stay values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out
