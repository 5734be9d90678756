"""Where results go, checked before anything is created: the Optuna storage and the MLflow
artifact location.

A storage is a URL Optuna opens (SQLAlchemy's ``sqlite:///``, ``postgresql://``,
``mysql://``…, or ``redis://`` for Optuna's journal on Redis) or the path of a journal
file. :meth:`StorageLocation.check` refuses a bad one without creating anything (no
journal file, no database file, no table): an unknown scheme, a scheme-like string that
is not a URL (``postgresql:/host/db`` would otherwise become a journal file of that
name), a server that does not answer, a database that does not exist, a directory, a
missing folder, a journal file with a damaged line (one with a torn last line is repaired:
:mod:`pipeline.stores.journal`). :meth:`StorageLocation.open` then creates what is
needed. Every message names ``--storage`` and shows the URL with its password masked
(:mod:`pipeline.tracking.urls`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import warnings
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import unquote, urlsplit
from urllib.request import url2pathname

from pipeline.errors import ConfigError
from pipeline.stores.journal import check_journal
from pipeline.tracking.urls import CONNECT_TIMEOUT_S, mask_url, scrub, sql_engine_kwargs

if TYPE_CHECKING:
    from pipeline.tracking.client import TrackingSettings

FIELD = "--storage"

#: ``scheme:`` at the start of a string; with one letter it is a Windows drive (``C:/``)
_SCHEME = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.-]+):")

#: schemes that are never a file name, even without ``/`` after the colon
_URL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "redis", "rediss")

#: what to install for a dialect's missing driver (the package's extras)
_EXTRAS = {"postgresql": "postgres", "redis": "redis"}

Kind = Literal["journal", "rdb", "redis"]


def default_storage_path(tracking: TrackingSettings | None) -> Path:
    """``optuna.journal`` beside the MLflow SQLite file, else in the current directory."""
    if tracking and tracking.tracking_uri.startswith("sqlite:///"):
        db = Path(tracking.tracking_uri.removeprefix("sqlite:///"))
        return db.parent / "optuna.journal"
    return Path("optuna.journal")


@dataclass(frozen=True)
class StorageLocation:
    """A parsed ``--storage``: what it is, and the URL or path as given."""

    url: str
    kind: Kind
    #: True when the user named no storage (the journal file beside ``mlflow.db``)
    default: bool = False

    @property
    def shown(self) -> str:
        """The URL to print or tag: the password masked."""
        return mask_url(self.url)

    def error(self, message: str) -> ConfigError:
        """A ``--storage`` error whose text cannot hold this URL's password."""
        return ConfigError(FIELD, scrub(message, self.url))

    # -- checks that create nothing -----------------------------------------------------
    def check(self, *, must_exist: bool = False) -> None:
        """Refuse a storage that cannot work, creating nothing. ``must_exist``: a file
        storage (journal, SQLite) must already be there (``pipeline best``)."""
        if self.kind == "journal":
            self._check_journal(must_exist)
        elif self.kind == "redis":
            self._check_redis()
        elif self._sqlite_path() is not None:
            self._check_sqlite(must_exist)
        else:
            self._check_server()

    def _check_file_path(self, path: Path, what: str, must_exist: bool) -> None:
        if path.is_dir():
            raise self.error(f"{str(path)!r} is a directory, not {what}")
        if not path.exists():
            if must_exist:
                if self.default:
                    raise ConfigError(
                        "study", f"no study storage at {path}; run `pipeline tune` first"
                    )
                raise self.error(f"{str(path)!r} does not exist")
            parent = path.parent
            if not parent.is_dir() and not self.default:  # open() makes the default's folder
                state = "is not a folder" if parent.exists() else "does not exist"
                raise self.error(f"the folder {str(parent)!r} of {str(path)!r} {state}")

    def _check_journal(self, must_exist: bool) -> None:
        path = Path(self.url)
        self._check_file_path(path, "an Optuna journal file", must_exist)
        if path.is_file():
            with open(path, "rb") as f:
                first = f.readline(1 << 20)
            # a complete first line must be a JSON record (a half-written one may be in flight)
            if first.endswith(b"\n"):
                try:
                    json.loads(first)
                except ValueError:
                    raise self.error(
                        f"{str(path)!r} is not an Optuna journal file (a database? give its "
                        f"URL, e.g. sqlite:///{path})"
                    ) from None
            # a damaged line is refused, a torn last line repaired (pipeline.stores.journal)
            check_journal(path, self.error)

    def _sqlite_path(self) -> Path | None:
        """The file of a ``sqlite:///`` URL; None for another dialect or an in-memory one."""
        from sqlalchemy.engine import make_url

        url = make_url(self.url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(url.database)

    def _check_sqlite(self, must_exist: bool) -> None:
        import sqlite3

        path = self._sqlite_path()
        assert path is not None
        self._check_file_path(path, "an SQLite database", must_exist)
        if path.is_file():  # read-only: opening it this way creates nothing
            try:
                uri = f"{path.resolve().as_uri()}?mode=ro"
                with closing(sqlite3.connect(uri, uri=True)) as db:
                    db.execute("PRAGMA schema_version")
            except sqlite3.Error as exc:
                raise self.error(f"{str(path)!r} is not a usable SQLite database: {exc}") from None

    def _check_server(self) -> None:
        from sqlalchemy.exc import SQLAlchemyError

        engine = self._engine()
        try:
            with engine.connect():
                pass
        except SQLAlchemyError as exc:
            raise self.error(f"cannot connect to {self.shown}: {_reason(exc)}") from None
        finally:
            engine.dispose()

    def _check_redis(self) -> None:
        try:
            import redis
        except ImportError:
            raise self.error(self._missing_driver("redis", "redis")) from None
        try:
            client = redis.Redis.from_url(
                self.url, socket_connect_timeout=CONNECT_TIMEOUT_S, socket_timeout=CONNECT_TIMEOUT_S
            )
            try:
                client.ping()
            finally:
                client.close()
        except (redis.RedisError, ValueError) as exc:
            raise self.error(f"cannot connect to {self.shown}: {_reason(exc)}") from None

    # -- opening (creates the journal file, tables, keys as needed) -----------------------
    def engine_kwargs(self) -> dict[str, Any]:
        """SQLAlchemy engine arguments: a connect timeout for database servers."""
        return sql_engine_kwargs(self.url)

    def _engine(self):
        import sqlalchemy

        try:
            return sqlalchemy.create_engine(self.url, **self.engine_kwargs())
        except ImportError as exc:
            raise self.error(self._missing_driver(_scheme(self.url), str(exc))) from None

    def _missing_driver(self, scheme: str, detail: str) -> str:
        backend = scheme.split("+")[0]
        extra = _EXTRAS.get("postgresql" if backend == "postgres" else backend)
        hint = f"pip install 'gan-pipeline[{extra}]'" if extra else "install its driver"
        return f"{self.shown} needs a database driver that is not installed ({detail}); {hint}"

    def open(self):
        """The Optuna storage (call :meth:`check` first: this creates what is missing)."""
        import optuna

        with warnings.catch_warnings():
            # Optuna marks RDBStorage's heartbeat and JournalRedisBackend (since 3.1)
            # "experimental"; that warning on every run is noise to the user
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            try:
                return self._open()
            except OSError as exc:
                raise self.error(f"cannot open {self.shown}: {_reason(exc)}") from None

    def _open(self):
        import optuna
        from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

        if self.kind == "redis":
            return optuna.storages.JournalStorage(JournalRedisBackend(self.url))
        if self.kind == "rdb":
            from sqlalchemy.exc import SQLAlchemyError

            from pipeline.stores import dead_trials  # imports Optuna

            try:
                return optuna.storages.RDBStorage(
                    self.url, engine_kwargs=self.engine_kwargs(), **dead_trials.RDB_HEARTBEAT
                )
            except SQLAlchemyError as exc:
                raise self.error(f"cannot use {self.shown}: {_reason(exc)}") from None
        if self.default:  # beside mlflow.db, whose folder MLflow creates too
            Path(self.url).parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(self.url))


def parse_storage(storage: str | None, tracking: TrackingSettings | None) -> StorageLocation:
    """What ``--storage`` names, refusing what is neither a URL Optuna opens nor a path."""
    if storage is None:
        return StorageLocation(str(default_storage_path(tracking)), "journal", default=True)
    if not storage.strip():
        raise ConfigError(FIELD, "is empty")
    if "://" in storage:
        scheme = _scheme(storage)
        if scheme in ("redis", "rediss"):
            return StorageLocation(storage, "redis")
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError

        try:
            make_url(storage).get_dialect()
        except NoSuchModuleError:
            raise ConfigError(
                FIELD,
                f"unknown scheme {scheme + '://'!r} in {mask_url(storage)}; give sqlite:///FILE, "
                "postgresql://HOST/DB, mysql://HOST/DB, redis://HOST:PORT or a journal file path",
            ) from None
        except (ArgumentError, ValueError) as exc:
            raise ConfigError(
                FIELD, f"{mask_url(storage)} is not a valid URL: {scrub(str(exc), storage)}"
            ) from None
        return StorageLocation(storage, "rdb")
    match = _SCHEME.match(storage)
    if match and (
        match.group("scheme").lower() in _URL_SCHEMES or storage[match.end() :][:1] == "/"
    ):
        scheme = match.group("scheme")
        example = f"{scheme}://" + (
            "HOST:PORT" if scheme.lower().startswith("redis") else "HOST/DB"
        )
        raise ConfigError(
            FIELD,
            f"{mask_url(storage)!r} looks like a URL but is not one: a URL needs '//' after "
            f"'{scheme}:' (e.g. {example}); a journal file needs a path without a scheme",
        )
    return StorageLocation(storage, "journal")


def open_storage(
    storage: str | None, tracking: TrackingSettings | None, *, must_exist: bool = False
):
    """An Optuna storage for a URL (``sqlite://``, ``postgresql://``, ``redis://``…) or a
    journal file path (``None``: the embedded journal file), and its URL as given (which
    may hold a password: show it through :func:`pipeline.tracking.urls.mask_url`). A storage that
    cannot work is refused (:class:`ConfigError` naming ``--storage``) before anything is
    created."""
    location = parse_storage(storage, tracking)
    location.check(must_exist=must_exist)
    return location.open(), location.url


def check_artifact_location(tracking: TrackingSettings, experiment_name: str) -> None:
    """Refuse, before any run exists, an artifact location the runs of ``experiment_name``
    could not write: under ``/proc``, below a regular file, without permission.

    That is the experiment's own location when it exists (MLflow keeps it per experiment),
    else the configured ``artifact_location`` (``mlflow.yaml``), where
    :func:`pipeline.tracking.client.ensure_experiment` will create it. Creates nothing: a
    SQLite tracking store that does not exist yet is not opened, and the write test is an
    unnamed temporary file.
    """
    location = tracking.experiment_artifact_location(experiment_name) or ""
    where = f"{tracking.artifact_location!r}"
    if _store_exists(tracking.tracking_uri):
        from pipeline.tracking.client import client_for
        from pipeline.tracking.http import TrackingUnavailable, reaching

        try:
            # a server that does not answer is TrackingUnavailable (exit 1, it may come back)
            with reaching(tracking.tracking_uri):
                found = client_for(tracking).get_experiment_by_name(experiment_name)
        except (TrackingUnavailable, ConfigError):  # already one line that names the fix
            raise
        except Exception as exc:  # any store error: the message must not hold a password
            raise ConfigError(
                "tracking_uri",
                f"cannot read {mask_url(tracking.tracking_uri)}: "
                f"{scrub(_reason(exc), tracking.tracking_uri)}",
            ) from None
        if found is not None:
            location = found.artifact_location
            where = f"{location!r} (where experiment {experiment_name!r} keeps its artifacts)"
    path = _local_path(location) if location else None
    if path is None:  # s3://, mlflow-artifacts:/, the server's choice: the store checks it
        return
    probe = path
    while not os.path.lexists(probe) and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(
            "artifact_location", f"{where} cannot be created: {str(probe)!r} is not a folder"
        )
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError as exc:
        raise ConfigError(
            "artifact_location",
            f"{where} cannot be written: {str(probe)!r}: {exc.strerror or exc}",
        ) from None


def _store_exists(tracking_uri: str) -> bool:
    """False only for an SQLite tracking file not created yet (opening it would create it)."""
    if tracking_uri.startswith("sqlite:///"):
        return Path(tracking_uri.removeprefix("sqlite:///")).is_file()
    return True


def _local_path(location: str) -> Path | None:
    """The local folder of an artifact location (a path or ``file://`` URI), else None."""
    if "://" not in location and not location.startswith("file:"):
        return Path(location).resolve() if not _SCHEME.match(location) else None
    parts = urlsplit(location)
    if parts.scheme != "file":
        return None
    return Path(url2pathname(unquote(parts.path)))


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower()


def _reason(exc: BaseException) -> str:
    """A driver's error as one line, without SQLAlchemy's "background on this error" link."""
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc) or type(exc).__name__
    text = text.split("(Background on this error")[0]
    return " ".join(text.split())
