"""An Optuna storage lost in the middle of a tune, said in one line.

When the database behind a study (PostgreSQL, MySQL, Redis) stops answering, Optuna
raises whatever its storage was doing at the time: a ``StorageInternalError`` whose message
blames "invalid data in the commit", SQLAlchemy's ``OperationalError``, a heartbeat
thread's ``UnboundLocalError`` around it. None of them says what happened. The client
library's own exception is always in the chain (SQLAlchemy and Optuna raise ``from`` it):
psycopg's or psycopg2's ``OperationalError`` (refused, reset, "terminating connection due
to administrator command") or redis's ``ConnectionError`` / ``TimeoutError``.
:func:`storage_lost` finds it and says, in the pipeline's words, which storage went and what
to do; the tuner ends the trial's and the study's MLflow runs with that reason. Optuna's
heartbeat thread (RDB storages) meets the same loss and would print its own three chained
tracebacks: :func:`quiet_lost_heartbeats` keeps those out of the terminal (unless
``PIPELINE_DEBUG=1``), since the tune's one line says it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

from pipeline.errors import PipelineError, causes, debug_wanted
from pipeline.tracking.urls import mask_url, scrub

#: the client libraries whose connection errors mean "the storage's server is gone"
_LOST = {
    ("psycopg", "OperationalError"),
    ("psycopg2", "OperationalError"),
    ("pymysql", "OperationalError"),
    ("MySQLdb", "OperationalError"),
    ("redis", "ConnectionError"),
    ("redis", "TimeoutError"),
}

F = TypeVar("F", bound=Callable[..., object])


class StorageUnavailable(PipelineError):
    """The Optuna storage's server stopped answering mid-tune. Not bad input: exit 1."""

    exit_code = 1

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(
            f"Optuna storage {mask_url(url)} unreachable ({reason}): the study and its "
            "finished trials stay there; once it answers again, rerun the same command "
            "(the trial it cut off is failed and retried)"
        )


def lost_connection(error: BaseException) -> str | None:
    """The database client's words when ``error`` (or what it was raised from) is a lost
    connection to its server; None for every other error."""
    for cause in causes(error):
        if isinstance(cause, StorageUnavailable):
            return cause.reason
        package = type(cause).__module__.split(".")[0]
        if (package, type(cause).__name__) in _LOST:
            lines = str(cause).strip().splitlines()  # the rest: psycopg's hints
            text = " ".join(lines[0].split()) if lines else type(cause).__name__
            return text if len(text) <= 200 else text[:197] + "..."
    return None


def storage_lost(url: str, error: BaseException) -> StorageUnavailable | None:
    """:class:`StorageUnavailable` for the storage at ``url`` when ``error`` is its server
    gone; None otherwise (the error stays what it is)."""
    if isinstance(error, StorageUnavailable):
        return error
    reason = lost_connection(error)
    return None if reason is None else StorageUnavailable(url, scrub(reason, url))


def saying_storage_lost(url: str, fn: F) -> F:
    """``fn`` (a callback that writes to the study: a trial's ``on_eval``), raising
    :class:`StorageUnavailable` instead of the client's error when the storage is gone, so
    that the trial's MLflow run ends with that reason."""

    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            lost = storage_lost(url, exc)
            if lost is None:
                raise
            raise lost from exc

    return call  # type: ignore[return-value]


def quiet_lost_heartbeats() -> None:
    """Keep a background thread's storage-lost traceback (Optuna's heartbeat) out of the
    terminal: the main thread meets the same loss and says it in one line. Other errors,
    and every error with ``PIPELINE_DEBUG=1``, go to the hook that was there. Idempotent."""
    previous = threading.excepthook
    if getattr(previous, "quiet_lost_heartbeats", False):
        return

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and lost_connection(args.exc_value) and not debug_wanted():
            return
        previous(args)

    hook.quiet_lost_heartbeats = True  # type: ignore[attr-defined]
    threading.excepthook = hook
