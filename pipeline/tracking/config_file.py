"""Paths in ``mlflow.yaml`` are the file's: relative ones are taken from its folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def beside_file(data: dict[str, Any], path: Path) -> dict[str, Any]:
    """``mlflow.yaml``'s values (``data``, read from ``path``) with a relative
    ``sqlite:///`` file, ``artifact_location`` and ``unsent_dir`` taken from the folder
    holding it, as paths in a config file are (``--mlflow-config other/mlflow.yaml`` means
    ``other/mlflow.db``); ``./mlflow.yaml`` gives the paths they always had."""
    folder = path.resolve().parent
    out = dict(data)
    uri = out.get("tracking_uri")
    if isinstance(uri, str) and uri.lower().startswith("sqlite:///"):
        file = uri[len("sqlite:///") :]
        if file and file != ":memory:" and not Path(file).is_absolute():
            out["tracking_uri"] = f"sqlite:///{folder / file}"
    for key in ("artifact_location", "unsent_dir"):
        value = out.get(key)
        if isinstance(value, str) and "://" not in value and not Path(value).is_absolute():
            out[key] = str(folder / value)
    return out
