"""Names that become paths: experiment, study, comparison and variant names.

An experiment's name is the last part of its artifact folder
(``<artifact_location>/<name>``), a comparison's is its report folder
(``<out>/<name>``), a variant's study name (``<comparison>-<variant>``) the name of the
experiment file written for it. Each is checked by :func:`check_name` before anything is
created, so a name cannot leave its folder (``../x``, ``/tmp/x``), hold a NUL or exceed
what a file system takes.

The rule: 1 to :data:`MAX_NAME_LENGTH` ASCII letters, digits, ``_``, ``.`` and ``-``,
starting with a letter, a digit or ``_`` — the rule plugin names follow
(:data:`pipeline.host.registry.NAME_PATTERN`) and the one comparison names followed. Unicode
letters are refused: one name can be written in several Unicode forms (NFC and NFD, which
macOS file systems normalise differently) and look-alike letters make two names that read
the same; ASCII keeps one spelling per name on every file system and in every URL.
"""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.errors import ConfigError

#: the longest name: a variant's study name ``<comparison>-<variant>.yaml`` stays under
#: the 255-byte file-name limit of ext4, APFS and NTFS (POSIX ``NAME_MAX``), and an
#: experiment name fits MLflow's 256-character ``experiments.name`` column
MAX_NAME_LENGTH = 100

NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*")

RULE = f"1 to {MAX_NAME_LENGTH} ASCII letters, digits, _ . - (not starting with . or -)"


def check_name(field: str, value: object) -> str:
    """``value`` when it is a safe name (the module's rule), else a :class:`ConfigError`
    naming ``field`` (the message shows at most the name's first 40 characters)."""
    if not isinstance(value, str) or not value:
        raise ConfigError(field, f"must be a non-empty string ({RULE})")
    shown = repr(value[:40] + ("…" if len(value) > 40 else ""))
    if len(value) > MAX_NAME_LENGTH:
        raise ConfigError(field, f"{shown} is {len(value)} characters long; allowed: {RULE}")
    if not NAME_PATTERN.fullmatch(value):
        raise ConfigError(
            field, f"{shown} is not a safe name (it becomes a folder); allowed: {RULE}"
        )
    return value


def path_inside(root: str | Path, name: str, field: str = "name") -> Path:
    """``root/name`` resolved (links followed), refused unless it lies inside ``root``
    resolved: the last guard of every folder or file made from a name."""
    base = Path(root).resolve()
    path = None if "\x00" in name else (base / name).resolve()  # resolve() refuses a NUL
    if path is None or path.parent != base:
        raise ConfigError(field, f"{name[:40]!r} would be written outside {str(base)!r}")
    return path
