"""MLflow over HTTP: bounded retries, and telling a server that went away from other errors.

Called by :mod:`pipeline.tracking.client`; calls only MLflow's documented environment variables
(``MLFLOW_HTTP_REQUEST_*``, read by ``mlflow.utils.rest_utils.http_request`` at every
request, not cached at import) and the ``requests`` exceptions MLflow raises from.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pipeline.errors import PipelineError, causes

#: Retries of one MLflow HTTP request (MLflow's default, 7 with backoff factor 2, retries
#: for ~4 minutes per request, and every queued batch retries again: 9+ minutes of silence
#: after a server died). 4 retries with factor 1 sleep 0 + 2 + 4 + 8 s (+ up to 1 s of
#: MLflow's jitter each): a blip of ~15 s (a proxy failing over, a worker restarting) goes
#: unnoticed, a dead server is reported within ~20 s (the run is kept and resumable).
DEFAULT_HTTP_RETRIES = 4
#: urllib3's backoff factor: sleep ``factor * 2 ** (n - 1)`` s before the n-th retry
#: (n >= 2); MLflow reads the variable as an integer
DEFAULT_HTTP_BACKOFF_FACTOR = 1
#: Seconds one HTTP attempt may wait to connect or between two bytes of the answer
#: (MLflow's default: 120). MLflow's server answers a ``log_batch`` in tens of ms and an
#: artifact upload within seconds on a LAN; 15 s leaves a wide margin and bounds a
#: black-holed host at (4 + 1) x 15 s + 14 s of backoff ~ 90 s.
DEFAULT_HTTP_TIMEOUT_S = 15

#: mlflow.yaml key -> (MLflow environment variable, lowest, highest). The bounds are
#: MLflow's own: it refuses more than 10 retries and a backoff factor above 120.
HTTP_KEYS: dict[str, tuple[str, int, int | None]] = {
    "http_retries": ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", 0, 10),
    "http_backoff_factor": ("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", 0, 120),
    "http_timeout_s": ("MLFLOW_HTTP_REQUEST_TIMEOUT", 1, None),
}


class TrackingUnavailable(PipelineError):
    """The MLflow tracking server did not answer (refused, timed out, or kept answering
    5xx) after MLflow's bounded retries. Not bad input: exit status 1."""

    exit_code = 1

    def __init__(self, uri: str, reason: str, detail: str = "") -> None:
        self.uri = uri
        self.reason = reason
        self.detail = detail
        retries = os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "?")
        message = (
            f"tracking: MLflow server {display_uri(uri)} unreachable "
            f"({reason}; after {retries} retries)"
        )
        super().__init__(message + (f"; {detail}" if detail else ""))


def display_uri(uri: str) -> str:
    """``uri`` without a ``user:password@`` part, for messages and files."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def unreachable_reason(exc: BaseException) -> str | None:
    """A short reason when ``exc`` (or what it was raised from) says the server could not
    be reached: refused or dropped connection, timeout, retries of 5xx answers exhausted.
    ``None`` for every other error (a rejected request, a bug): those stay what they are."""
    import requests

    lost = (
        requests.exceptions.ConnectionError,
        requests.exceptions.Timeout,
        requests.exceptions.RetryError,
    )
    chain = list(causes(exc))
    earlier = next((c for c in chain if isinstance(c, TrackingUnavailable)), None)
    if earlier is not None:  # lost while handling an earlier loss: that one's reason
        return earlier.reason
    if not any(isinstance(c, lost) for c in chain):
        return None
    deepest = chain[-1]
    text = " ".join(str(deepest).split())
    if len(text) > 160:
        text = text[:157] + "..."
    return f"{type(deepest).__name__}: {text}" if text else type(deepest).__name__


@contextmanager
def reaching(uri: str) -> Iterator[None]:
    """Turn an MLflow error that means "no server" into :class:`TrackingUnavailable`."""
    try:
        yield
    except TrackingUnavailable:
        raise
    except Exception as exc:
        reason = unreachable_reason(exc)
        if reason is None:
            raise
        # lost again while handling a loss that kept data (a trial's folder): keep its words
        earlier = next(
            (c for c in causes(exc.__context__) if isinstance(c, TrackingUnavailable)), None
        )
        raise TrackingUnavailable(uri, reason, earlier.detail if earlier else "") from exc


#: values this process put into the environment (the user's own are never overwritten)
_HTTP_ENV_OURS: dict[str, str] = {}


def apply_http_settings(settings: Any) -> None:
    """Put the bounded retry settings of ``settings`` (a :class:`TrackingSettings`) into
    MLflow's ``MLFLOW_HTTP_REQUEST_*`` variables.

    MLflow reads them at every request (``mlflow.utils.rest_utils.http_request``), so this
    takes effect for clients made before and after. A variable the user set stays theirs;
    one this process set earlier is updated.
    """
    for key, (name, _, _) in HTTP_KEYS.items():
        value = str(getattr(settings, key))
        current = os.environ.get(name)
        if current is None or current == _HTTP_ENV_OURS.get(name):
            os.environ[name] = value
            _HTTP_ENV_OURS[name] = value
