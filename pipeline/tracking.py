"""MLflow tracking: settings from ``mlflow.yaml``, one run per training, batched logging.

Called by training and tuning; calls nothing of theirs. Uses ``MlflowClient`` with
explicit run ids (never the fluent "active run"), so worker threads of a tune each
log to their own run.

Settings precedence for the tracking URI: ``--tracking-uri`` flag, then the
``MLFLOW_TRACKING_URI`` environment variable, then ``mlflow.yaml``, then
``sqlite:///mlflow.db`` (MLflow 3 refuses the old ``./mlruns`` file store by default).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

# MLflow's anonymous usage telemetry (on by default since MLflow 3.2) stays off in
# everything this project starts, unless the user set the variable themselves.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACT_LOCATION = "mlartifacts"
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100


@dataclass(frozen=True)
class TrackingSettings:
    """Where runs go: the tracking URI, the artifact root and the experiment name."""

    tracking_uri: str = DEFAULT_TRACKING_URI
    artifact_location: str = DEFAULT_ARTIFACT_LOCATION
    #: None: use the experiment file's name
    experiment_name: str | None = None

    @classmethod
    def load(
        cls,
        config_path: str | Path | None = None,
        *,
        tracking_uri: str | None = None,
        experiment_name: str | None = None,
    ) -> TrackingSettings:
        """Read ``mlflow.yaml`` (default: ``./mlflow.yaml`` when present) and apply overrides."""
        data: dict[str, Any] = {}
        path = Path(config_path) if config_path else Path("mlflow.yaml")
        if config_path and not path.is_file():
            raise ConfigError("mlflow config", f"{str(path)!r} does not exist")
        if path.is_file():
            loaded = yaml.safe_load(path.read_text()) or {}
            if not isinstance(loaded, dict):
                raise ConfigError("mlflow config", f"{path} must hold a mapping")
            allowed = {"tracking_uri", "artifact_location", "experiment_name"}
            for key in loaded:
                if key not in allowed:
                    raise ConfigError(
                        f"{path.name}:{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})"
                    )
            data = {k: v for k, v in loaded.items() if v is not None}
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or data.get("tracking_uri")
        return cls(
            tracking_uri=str(uri or DEFAULT_TRACKING_URI),
            artifact_location=str(data.get("artifact_location", DEFAULT_ARTIFACT_LOCATION)),
            experiment_name=experiment_name or data.get("experiment_name"),
        )

    def artifact_uri(self) -> str:
        """The artifact root as a URI (a relative folder is taken from the current directory)."""
        loc = self.artifact_location
        if "://" in loc:
            return loc
        return Path(loc).resolve().as_uri()


def client_for(settings: TrackingSettings):
    """An ``MlflowClient`` on the configured store (imports MLflow lazily: it is slow)."""
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=settings.tracking_uri)


def ensure_experiment(client, name: str, settings: TrackingSettings) -> str:
    """The id of the MLflow experiment ``name``, created with our artifact root if missing."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(
            name, artifact_location=settings.artifact_uri() + "/" + name
        )
    except MlflowException:  # another worker created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class RunTracker:
    """One MLflow run, logged through batches."""

    def __init__(self, client, run_id: str, tracking_uri: str) -> None:
        self.client = client
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.finished = False
        self._worker: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on this run's one background thread, in submission order.

        The training loop hands it metric batches and sample plots, so SQLite commits and
        matplotlib rendering overlap with torch (which releases the GIL) instead of
        stalling it. Errors surface at :meth:`drain`.
        """
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-log")
        self._pending = [f for f in self._pending if not f.done() or f.exception()]
        self._pending.append(self._worker.submit(fn, *args))

    def drain(self) -> None:
        """Wait for everything submitted; re-raise the first error."""
        pending, self._pending = self._pending, []
        errors = [f.exception() for f in pending if f.exception() is not None]
        if self._worker is not None:
            self._worker.shutdown(wait=True)
            self._worker = None
        if errors:
            raise errors[0]

    @classmethod
    def start(
        cls,
        settings: TrackingSettings,
        experiment_name: str,
        *,
        run_name: str | None = None,
        tags: dict[str, str] | None = None,
        parent_run_id: str | None = None,
    ) -> RunTracker:
        client = client_for(settings)
        experiment_id = ensure_experiment(client, experiment_name, settings)
        all_tags = dict(tags or {})
        if parent_run_id:
            all_tags["mlflow.parentRunId"] = parent_run_id
        run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        return cls(client, run.info.run_id, settings.tracking_uri)

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(self.run_id, tags=items[i : i + MAX_PARAMS_PER_BATCH])

    def log_metrics(self, rows: list[tuple[str, float, int]]) -> None:
        """Log ``(key, value, step)`` rows in batches of up to 1,000 (MLflow's limit)."""
        if not rows:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, int(step)) for key, value, step in rows]
        for i in range(0, len(items), MAX_METRICS_PER_BATCH):
            self.client.log_batch(self.run_id, metrics=items[i : i + MAX_METRICS_PER_BATCH])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_generator(self, generator, noise_dim: int) -> None:
        """Log the generator as an MLflow PyTorch model named ``generator``.

        ``pickle`` serialization (the ``pt2`` default needs an input example and an export)
        and explicit pip requirements: inferring them took 10 s per call here.
        """
        import mlflow.pytorch
        import torch

        from pipeline import __version__

        # log_model goes through MLflow's fluent API, which reads the process-wide URI
        mlflow.set_tracking_uri(self.tracking_uri)
        # we chose pickle on purpose; MLflow's warning about it is noise to the user
        logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
        # create the LoggedModel in the run's experiment ourselves: given only a run id,
        # MLflow 3.17 files it under the fluent default experiment (./mlruns/0)
        experiment_id = self.client.get_run(self.run_id).info.experiment_id
        logged = self.client.create_logged_model(
            experiment_id, name="generator", source_run_id=self.run_id, model_type="generator"
        )
        mlflow.pytorch.log_model(
            generator,
            name="generator",
            run_id=self.run_id,
            model_id=logged.model_id,
            serialization_format="pickle",
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"gan-pipeline=={__version__}",
            ],
            metadata={"noise_dim": noise_dim},
        )

    def finish(self, status: str, reason: str | None = None) -> None:
        """End the run as FINISHED, FAILED or KILLED (with the reason as a tag)."""
        if self.finished:
            return
        try:
            self.drain()
        except Exception as exc:  # a failed background write must not hide the run's end
            if status == "FINISHED":
                status, reason = "FAILED", f"tracking failed: {type(exc).__name__}: {exc}"
        if reason:
            self.set_tags({"failure_reason": reason[:5000]})
        self.client.set_terminated(self.run_id, status=status)
        self.finished = True
