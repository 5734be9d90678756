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

#: the largest YAML file (and ``-o`` value) read: 1 MiB. Experiment and comparison files
#: are a few KiB; PyYAML (pure Python) reads about 1 MiB a second, so a bigger file is
#: refused by its size before a byte is parsed (a 50 MB file took over a minute to refuse)
MAX_YAML_BYTES = 1 << 20

#: what aliases (``*name``) may add to a document, in scalar characters plus one per
#: node, each alias counted as the whole node it repeats: 100,000. A YAML alias is a
#: reference, so a "billion laughs" document (ten aliases of ten aliases of … ) is a few
#: hundred bytes that expands to gigabytes once printed or copied (CVE-2003-1564 for XML
#: entities; go-yaml refuses such documents as "excessive aliasing", CVE-2019-11254).
#: A ``<<: *defaults`` merge of a few settings adds some hundreds.
MAX_ALIAS_EXPANSION = 100_000


def _alias_expansion(root: yaml.Node) -> int | None:
    """What aliases add to the document of ``root`` (see :data:`MAX_ALIAS_EXPANSION`),
    or None for a recursive alias (an anchor used inside itself: endless)."""
    sizes: dict[int, int] = {}
    added = 0
    # iterative post-order walk in document order: the first visit of a node is its anchor,
    # every later one an alias of it
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    open_nodes: set[int] = set()
    while stack:
        node, done = stack.pop()
        key = id(node)
        if done:
            children = _children(node)
            sizes[key] = 1 + sum(sizes[id(c)] for c in children)
            open_nodes.discard(key)
            continue
        if key in open_nodes:
            return None
        if key in sizes:
            added += sizes[key]
            if added > MAX_ALIAS_EXPANSION:
                return added
            continue
        if isinstance(node, yaml.ScalarNode):
            sizes[key] = 1 + len(node.value)
            continue
        open_nodes.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in reversed(_children(node)))
    return added


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def safe_yaml(text: str, where: str) -> Any:
    """``text`` read as YAML (PyYAML's safe loader), refusing a text over
    :data:`MAX_YAML_BYTES` and aliases past :data:`MAX_ALIAS_EXPANSION` before any value
    is built; ``where`` names the text in those errors (a :class:`ConfigError` without
    field). Invalid YAML raises ``yaml.YAMLError`` as ``yaml.safe_load`` does."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise ConfigError("", f"{where} is larger than {MAX_YAML_BYTES} bytes (1 MiB)")
    loader = yaml.SafeLoader(text)
    try:
        try:
            node = loader.get_single_node()
        except RecursionError:
            raise ConfigError("", f"{where} is nested too deeply") from None
        if node is None:
            return None
        added = _alias_expansion(node)
        if added is None:
            raise ConfigError("", f"{where} has an alias inside its own anchor (endless)")
        if added > MAX_ALIAS_EXPANSION:
            raise ConfigError(
                "",
                f"{where} has aliases (*name) that expand past {MAX_ALIAS_EXPANSION:,} "
                "characters and nodes (a YAML alias bomb?)",
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def read_text_bounded(path: Path, what: str = "file") -> str:
    """The UTF-8 text of ``path``, refused (:class:`ConfigError`) when it is larger than
    :data:`MAX_YAML_BYTES`: its size is known before the text is parsed, and no more than
    that is read (a file that grows while read is refused too)."""
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_YAML_BYTES + 1)
    except OSError as exc:
        raise ConfigError("", f"{what} {str(path)!r} cannot be read: {exc.strerror}") from None
    if len(raw) > MAX_YAML_BYTES:
        raise ConfigError("", f"{what} {str(path)!r} is larger than {MAX_YAML_BYTES} bytes (1 MiB)")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            "", f"{what} {str(path)!r} is not UTF-8 text (byte {exc.start})"
        ) from None


def load_yaml(path: str | Path, what: str = "experiment file") -> dict[str, Any]:
    """An experiment (or comparison) file as nested dicts; ``name`` defaults to the file's
    stem. ``what`` names the file in errors. A file over :data:`MAX_YAML_BYTES` (1 MiB) is
    refused by its size before it is read, aliases that expand past
    :data:`MAX_ALIAS_EXPANSION` (100,000 characters and nodes) before any value is built."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("", f"{what} {str(path)!r} does not exist")
    try:
        data = safe_yaml(read_text_bounded(path, what), f"{what} {str(path)!r}")
    except yaml.YAMLError as exc:
        raise ConfigError("", f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError("", f"{path} must hold a mapping of sections, got {type(data).__name__}")
    data.setdefault("name", path.stem)
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.steps=2000"`` → ``("train.steps", 2000)``; the value is read as YAML
    (:func:`safe_yaml`: at most 1 MiB, aliases expanding to at most 100,000)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ConfigError("", f"override {text!r} must look like key.path=value")
    try:  # bounded like a file: 1 MiB, aliases up to MAX_ALIAS_EXPANSION
        value = safe_yaml(raw, "the -o value") if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    except ConfigError as exc:
        raise ConfigError(key, exc.message) from None
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
