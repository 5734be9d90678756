"""Shared fixtures: the real registry, real MLflow stores in temp dirs, experiment paths."""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@pytest.fixture(scope="session", autouse=True)
def classifier_cache(tmp_path_factory):
    """Feature classifiers of the image metrics are cached in a temp dir, never in ~/.cache."""
    path = tmp_path_factory.mktemp("classifier-cache")
    previous = os.environ.get("GAN_PIPELINE_CLASSIFIER_CACHE")
    os.environ["GAN_PIPELINE_CLASSIFIER_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("GAN_PIPELINE_CLASSIFIER_CACHE", None)
    else:
        os.environ["GAN_PIPELINE_CLASSIFIER_CACHE"] = previous


ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
#: the installed gan-pipeline, as errors and MLflow tags name it ("gan-pipeline 0.1.0")
GAN_PIPELINE = f"gan-pipeline {importlib.metadata.version('gan-pipeline')}"


@pytest.fixture(scope="session")
def registry():
    from pipeline.registry import default_registry

    return default_registry()


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory):
    """One real MLflow SQLite store for the whole session (creating one costs seconds)."""
    from pipeline.tracking import TrackingSettings

    root = tmp_path_factory.mktemp("mlflow")
    return TrackingSettings(
        tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_location=str(root / "artifacts")
    )


def tiny(path: str | Path, *extra: str) -> list[str]:
    """Overrides that make any experiment train for a few steps."""
    return [
        "train.steps=6",
        "train.eval_every=3",
        "train.log_every=2",
        "train.eval_samples=500",
        *extra,
    ]
