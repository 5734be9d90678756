"""MLflow tracking: settings from ``mlflow.yaml``, one run per training, batched logging.

Called by training and tuning; calls nothing of theirs. Uses ``MlflowClient`` with
explicit run ids (never the fluent "active run"), so worker threads of a tune each
log to their own run.

Settings precedence for the tracking URI: ``--tracking-uri`` flag, then the
``MLFLOW_TRACKING_URI`` environment variable, then ``mlflow.yaml``, then
``sqlite:///mlflow.db`` (MLflow 3 refuses the old ``./mlruns`` file store by default).

A tracking server that goes away: MLflow's HTTP retries are bounded (``http_retries``,
``http_backoff_factor``, ``http_timeout_s`` in ``mlflow.yaml``, each overridden by the
``MLFLOW_HTTP_REQUEST_*`` variable of the same meaning when the user set it), and a
request that still finds no server raises :class:`TrackingUnavailable` (one line, exit
status 1) instead of MLflow's traceback. A background write that fails so is recorded and
re-raised at the training loop's next flush (:meth:`RunTracker.check`); what the run had not
sent is then kept on local disk (:mod:`pipeline.training.unsent`).
"""

from __future__ import annotations

import os
import posixpath
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from pipeline.errors import ConfigError
from pipeline.experiment.names import check_name
from pipeline.experiment.tree import read_text_bounded, safe_yaml
from pipeline.tracking.config_file import beside_file
from pipeline.tracking.http import (
    DEFAULT_HTTP_BACKOFF_FACTOR,
    DEFAULT_HTTP_RETRIES,
    DEFAULT_HTTP_TIMEOUT_S,
    HTTP_KEYS,
    TrackingUnavailable,
    apply_http_settings,
    reaching,
)

# MLflow's anonymous usage telemetry (on by default since MLflow 3.2) stays off in
# everything this project starts, unless the user set the variable themselves.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
DEFAULT_ARTIFACT_LOCATION = "mlartifacts"
MAX_METRICS_PER_BATCH = 1000
MAX_PARAMS_PER_BATCH = 100

#: Where a run whose server went away keeps what it could not send, one folder per run id,
#: relative to the current directory like ``mlflow.db`` and ``mlartifacts/`` (the artifact
#: location may be remote, and a temp folder would be deleted at exit)
DEFAULT_UNSENT_DIR = "gan-pipeline-unsent"
#: what a run is, on every run: ``train``, ``trial``, ``study``, ``comparison``, ``seed``
ROLE_TAG = "pipeline.role"


@dataclass(frozen=True)
class TrackingSettings:
    """Where runs go: the tracking URI, the artifact root and the experiment name."""

    tracking_uri: str = DEFAULT_TRACKING_URI
    artifact_location: str = DEFAULT_ARTIFACT_LOCATION
    #: None: use the experiment file's name
    experiment_name: str | None = None
    http_retries: int = DEFAULT_HTTP_RETRIES
    http_backoff_factor: int = DEFAULT_HTTP_BACKOFF_FACTOR
    http_timeout_s: int = DEFAULT_HTTP_TIMEOUT_S
    unsent_dir: str = DEFAULT_UNSENT_DIR

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
            try:  # bounded: 1 MiB, no alias bomb (pipeline.experiment.tree.safe_yaml)
                text = read_text_bounded(path, "mlflow config")
                loaded = safe_yaml(text, f"mlflow config {str(path)!r}") or {}
            except yaml.YAMLError as exc:
                raise ConfigError("mlflow config", f"{path} is not valid YAML: {exc}") from None
            if not isinstance(loaded, dict):
                raise ConfigError("mlflow config", f"{path} must hold a mapping")
            allowed = {"tracking_uri", "artifact_location", "experiment_name", "unsent_dir"}
            allowed |= set(HTTP_KEYS)
            for key in loaded:
                if key not in allowed:
                    raise ConfigError(
                        f"{path.name}:{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})"
                    )
            data = {k: v for k, v in loaded.items() if v is not None}
            for key, (_, low, high) in HTTP_KEYS.items():
                value = data.get(key)
                if value is None:
                    continue
                in_range = isinstance(value, int) and not isinstance(value, bool)
                in_range = in_range and value >= low and (high is None or value <= high)
                if not in_range:
                    bounds = f"from {low} to {high}" if high is not None else f">= {low}"
                    raise ConfigError(
                        f"{path.name}:{key}", f"must be a whole number {bounds}, got {value!r}"
                    )
            unsent = data.get("unsent_dir")
            if unsent is not None and (not isinstance(unsent, str) or not unsent.strip()):
                raise ConfigError(f"{path.name}:unsent_dir", f"must be a folder, got {unsent!r}")
        if path.is_file():  # the file's relative paths are the file's, wherever one runs
            data = beside_file(data, path)
        uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or data.get("tracking_uri")
        if experiment_name is not None:  # it becomes the artifact folder's name
            check_name("--experiment-name", experiment_name)
        elif data.get("experiment_name") is not None:
            check_name(f"{path.name}:experiment_name", data["experiment_name"])
        return cls(
            tracking_uri=str(uri or DEFAULT_TRACKING_URI),
            artifact_location=str(data.get("artifact_location", DEFAULT_ARTIFACT_LOCATION)),
            experiment_name=experiment_name or data.get("experiment_name"),
            http_retries=data.get("http_retries", DEFAULT_HTTP_RETRIES),
            http_backoff_factor=data.get("http_backoff_factor", DEFAULT_HTTP_BACKOFF_FACTOR),
            http_timeout_s=data.get("http_timeout_s", DEFAULT_HTTP_TIMEOUT_S),
            unsent_dir=str(data.get("unsent_dir", DEFAULT_UNSENT_DIR)),
        )

    def serves_artifacts(self) -> bool:
        """True for a tracking server (``http(s)://``) with no ``artifact_location`` of
        ours: the server picks each new experiment's artifact location (with ``mlflow
        server``'s default ``--serve-artifacts``, ``mlflow-artifacts:/`` — uploads go through
        the server to its ``--artifacts-destination``, so workers need no shared disk)."""
        return (
            self.tracking_uri.startswith(("http://", "https://"))
            and self.artifact_location == DEFAULT_ARTIFACT_LOCATION
        )

    def experiment_artifact_location(self, experiment_name: str) -> str | None:
        """Where a new experiment keeps its artifacts (``<artifact root>/<name>``); None:
        the server decides. The location is resolved and must stay inside the artifact
        root: a name that leads out of it (``..``, a ``/``) is a :class:`ConfigError`
        (names are checked on input too, :mod:`pipeline.experiment.names`)."""
        if self.serves_artifacts():
            return None
        root = self.artifact_uri()
        location = root + "/" + experiment_name
        root_path, path = urlsplit(root).path.rstrip("/"), urlsplit(location).path
        inside = posixpath.normpath(path).startswith(posixpath.normpath(root_path) + "/")
        if "\x00" in experiment_name or "/" in experiment_name or not inside:
            raise ConfigError(
                "artifact_location",
                f"experiment {experiment_name[:40]!r} would keep its artifacts outside {root}",
            )
        return location

    def artifact_uri(self) -> str:
        """The artifact root as a URI (a relative folder is taken from the current directory)."""
        loc = self.artifact_location
        if "://" in loc:
            return loc
        return Path(loc).resolve().as_uri()


#: tracking URIs whose store this process has opened (MLflow caches it per URI)
_opened: set[str] = set()


def client_for(settings: TrackingSettings):
    """An ``MlflowClient`` on the configured store (imports MLflow lazily: it is slow),
    with the bounded HTTP retries of :func:`apply_http_settings`.

    The first client of a process opens the store under the store's own lock
    (:func:`pipeline.tracking.locks.store_lock`): opening a new SQL store creates MLflow's
    schema, and two processes doing that at once fail (``table runs already exists``)."""
    from mlflow.tracking import MlflowClient

    apply_http_settings(settings)
    if settings.tracking_uri in _opened:
        return MlflowClient(tracking_uri=settings.tracking_uri)
    from pipeline.tracking import sqlite_store
    from pipeline.tracking.locks import store_lock

    # MlflowClient() opens the store in its constructor (and MLflow caches it per URI)
    with store_lock(settings.tracking_uri, "tracking"):
        sqlite_store.prepare(settings.tracking_uri)  # a new SQLite store: whole or not at all
        client = MlflowClient(tracking_uri=settings.tracking_uri)
    _opened.add(settings.tracking_uri)
    return client


def ensure_experiment(client, name: str, settings: TrackingSettings) -> str:
    """The id of the MLflow experiment ``name``, created with our artifact root if missing."""
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(
            name,
            artifact_location=settings.experiment_artifact_location(name),
            # the UI opens it in its model-training view, not the GenAI one
            tags={"mlflow.experimentKind": "custom_model_development"},
        )
    except MlflowException:  # another worker created it first
        found = client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


class RunTracker:
    """One MLflow run, logged through batches.

    When the server cannot be reached (after MLflow's bounded retries), every logging
    method raises :class:`TrackingUnavailable`, and from then on raises it at once without
    touching the network; metric rows that were not sent are kept in ``unsent_metrics``.
    """

    def __init__(self, client, run_id: str, tracking_uri: str) -> None:
        self.client = client
        self.run_id = run_id
        self.tracking_uri = tracking_uri
        self.finished = False
        #: the experiment the run belongs to (set by :meth:`start`)
        self.experiment_id: str | None = None
        self.experiment_name: str | None = None
        #: the first "server unreachable" error, from any thread
        self.unreachable: TrackingUnavailable | None = None
        #: (key, value, step) rows MLflow did not acknowledge
        self.unsent_metrics: list[tuple[str, float, int]] = []
        self._worker: ThreadPoolExecutor | None = None
        self._pending: list[Future] = []

    @contextmanager
    def _reaching(self) -> Iterator[None]:
        """Fail at once when the server was already found gone; record it when it is."""
        if self.unreachable is not None:
            raise TrackingUnavailable(self.tracking_uri, self.unreachable.reason)
        try:
            with reaching(self.tracking_uri):
                yield
        except TrackingUnavailable as exc:
            if self.unreachable is None:
                self.unreachable = exc
            raise

    def check(self) -> None:
        """Raise :class:`TrackingUnavailable` when a background write found the server gone
        (one attribute read: the training loop calls it at every flush)."""
        if self.unreachable is not None:
            raise TrackingUnavailable(self.tracking_uri, self.unreachable.reason)

    def submit(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` on this run's one background thread, in submission order.

        The training loop hands it metric batches and sample plots, so SQLite commits and
        matplotlib rendering overlap with torch (which releases the GIL) instead of
        stalling it. Errors surface at :meth:`drain`; a lost server surfaces at
        :meth:`check` instead (the job's rows are kept, later jobs do not wait on it).
        """
        if self._worker is None:
            self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlflow-log")
        self._pending = [f for f in self._pending if not f.done() or f.exception()]
        self._pending.append(self._worker.submit(self._quiet_when_lost, fn, *args))

    @staticmethod
    def _quiet_when_lost(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except TrackingUnavailable:
            pass  # recorded in ``unreachable``; the loop stops at its next check()

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
        with reaching(settings.tracking_uri):
            experiment_id = ensure_experiment(client, experiment_name, settings)
            all_tags = dict(tags or {})
            if parent_run_id:
                all_tags["mlflow.parentRunId"] = parent_run_id
            run = client.create_run(experiment_id, run_name=run_name, tags=all_tags)
        tracker = cls(client, run.info.run_id, settings.tracking_uri)
        tracker.experiment_id = experiment_id
        tracker.experiment_name = experiment_name
        return tracker

    def log_params(self, params: dict[str, Any]) -> None:
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in params.items()]
        with self._reaching():
            for i in range(0, len(items), MAX_PARAMS_PER_BATCH):
                self.client.log_batch(self.run_id, params=items[i : i + MAX_PARAMS_PER_BATCH])

    def set_tags(self, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, str(v)) for k, v in tags.items()]
        with self._reaching():
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
            try:
                with self._reaching():
                    self.client.log_batch(self.run_id, metrics=items[i : i + MAX_METRICS_PER_BATCH])
            except TrackingUnavailable:
                self.unsent_metrics.extend(rows[i:])
                raise

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        with self._reaching():
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_generator(self, generator, noise_dim: int) -> None:
        """Log the generator as an MLflow PyTorch model named ``generator``
        (:func:`pipeline.tracking.generator_model.log_generator_model`)."""
        from pipeline.tracking.generator_model import log_generator_model

        with self._reaching():
            log_generator_model(self.client, self.run_id, self.tracking_uri, generator, noise_dim)

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
        with self._reaching():
            self.client.set_terminated(self.run_id, status=status)
        self.finished = True

    def mark_failed(self, reason: str, probe_timeout_s: float = 3.0) -> bool:
        """After the server was found gone: end the run FAILED with ``failure_reason`` if
        the server answers again, else leave it. Bounded: one ``/health`` probe of at most
        ``probe_timeout_s`` (3 s: a live server on a LAN answers in milliseconds), then,
        only if anything answered, the two writes under the usual bounded retries.
        Returns whether the run is now FAILED on the server."""
        if self.finished:
            return False
        if self.tracking_uri.startswith(("http://", "https://")):
            import requests

            try:
                requests.get(self.tracking_uri.rstrip("/") + "/health", timeout=probe_timeout_s)
            except requests.exceptions.RequestException:
                return False  # any HTTP answer (even a 404 of a proxy) counts as "up"
        self.unreachable = None  # let the two writes through once more
        try:
            self.set_tags({"failure_reason": reason[:5000]})
            with self._reaching():
                self.client.set_terminated(self.run_id, status="FAILED")
        except Exception:
            return False
        self.finished = True
        return True
