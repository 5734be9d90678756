"""A study goes on only with the config it started with (mimicry's rule): trials of
different base configs are not comparable. The base and the search space are kept in the
study's user attributes when it starts and compared on every later start."""

from __future__ import annotations

from typing import Any

from pipeline.errors import ConfigError
from pipeline.training.resume import ADDED_SETTINGS


def check_same_config(study, study_name: str, base: dict[str, Any], space: dict[str, Any]) -> None:
    """Record ``base`` (flat params) and ``space`` on a new study; refuse another config on
    a known one, naming the keys that differ."""
    known = study.user_attrs.get("base_config")
    if known is None:
        study.set_user_attr("base_config", base)
        study.set_user_attr("search_space", space)
        return
    # a study started before a setting existed ran with the value that trains as before
    known = {k: v for k, v in ADDED_SETTINGS.items() if k in base} | known
    known_space = {"seeds": 1} | study.user_attrs.get("search_space", {})
    changed = sorted(k for k in set(base) | set(known) if base.get(k) != known.get(k))
    if changed or known_space != space:
        what = ", ".join(changed[:5]) if changed else "the tune: space"
        raise ConfigError(
            "--study-name",
            f"study {study_name!r} was started with a different config ({what} differ); "
            f"resume it with the same file and overrides, or pick a new --study-name",
        )
