"""One lock per store, held by whichever worker process creates or changes shared state.

Several ``pipeline tune`` workers may start in the same instant on a fresh store (issue 11).
What must then happen exactly once — MLflow creating its SQL schema, Optuna creating its
RDB schema and the study, electing the study's one MLflow parent run, the worker list that
decides who ends that parent — happens under a lock that *the store itself* provides, so
it holds across processes and machines without a scheduler of our own:

- **PostgreSQL**: a session advisory lock (``pg_advisory_lock``, PostgreSQL manual §13.3.5)
  on its own connection; PostgreSQL releases it when that connection ends, so a worker
  killed while holding it blocks no one.
- **SQLite file, journal file**: an ``fcntl`` lock (the ``filelock`` package) on a file
  beside it (``<file>.<purpose>.lock``); the kernel drops it with the process. Not the
  journal's own ``<file>.lock``: Optuna's journal takes that one for every append.
- **Redis**: redis-py's :class:`~redis.lock.Lock` (a ``SET NX`` key with an expiry), kept
  alive by a thread that extends it while it is held, so a dead holder frees it within
  :data:`REDIS_LOCK_TTL_S`.
- Anything else (an MLflow HTTP server creates its own schema; MySQL): no lock.

``purpose`` keeps two locks on one store apart (Optuna and MLflow may share one database:
taking the same advisory lock from a second connection of one process would deadlock).
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path

#: Seconds a Redis lock outlives a holder that stopped extending it (died); the holder
#: extends it every third of that (the single-instance ``SET key token NX PX ttl`` lock of
#: the Redis manual's "Distributed locks" page, which redis-py's ``Lock`` implements, with
#: its ``extend``). 30 s: the grace period after which :mod:`pipeline.stores.dead_trials` takes a
#: silent worker for dead (``GRACE_PERIOD_S``).
REDIS_LOCK_TTL_S = 30
#: Seconds to wait for any store lock before giving up with an error: the longest thing
#: done under it (the last worker logging the study's plots) takes seconds, not minutes.
WAIT_S = 600


def _key(purpose: str) -> int:
    """A signed 64-bit advisory-lock key for ``purpose`` (stable across processes)."""
    digest = hashlib.sha256(f"gan-pipeline:{purpose}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


class LockBusy(Exception):
    """:func:`store_lock` with ``wait=False`` found the lock held by another process."""


def store_lock(
    url: str, purpose: str = "study", *, wait: bool = True
) -> AbstractContextManager[None]:
    """A context manager holding the lock ``url``'s store provides (see the module doc).

    ``url`` is an Optuna ``--storage`` (URL or journal file path) or an MLflow tracking
    URI; ``purpose`` names which lock (``"study"``, ``"tracking"``). ``wait=False`` does not
    wait: a lock held elsewhere raises :class:`LockBusy` at once (a comparison held for as
    long as it runs, :mod:`pipeline.compare.runner`)."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if scheme.startswith("postgres"):
        return _postgres_lock(url, purpose, wait)
    if scheme.startswith("redis"):
        return _redis_lock(url, purpose, wait)
    if scheme == "sqlite":
        from sqlalchemy.engine import make_url

        database = make_url(url).database
        if database in (None, "", ":memory:"):
            return contextlib.nullcontext()
        return _file_lock(Path(database), purpose, wait)
    if scheme in ("", "file") and url.strip():  # a journal file path
        return _file_lock(Path(url.removeprefix("file://")), purpose, wait)
    return contextlib.nullcontext()


@contextmanager
def _file_lock(path: Path, purpose: str, wait: bool = True) -> Iterator[None]:
    from filelock import FileLock, Timeout

    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(f"{path}.{purpose}.lock", timeout=WAIT_S if wait else 0)
    try:
        lock.acquire()
    except Timeout:
        if not wait:
            raise LockBusy(purpose) from None
        raise
    try:
        yield
    finally:
        lock.release()


@contextmanager
def _postgres_lock(url: str, purpose: str, wait: bool = True) -> Iterator[None]:
    import sqlalchemy

    from pipeline.tracking.urls import sql_engine_kwargs

    kwargs = sql_engine_kwargs(url)  # the connect timeout
    engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool, **kwargs)
    try:
        with engine.connect() as conn:
            if wait:
                conn.execute(sqlalchemy.text(f"SET lock_timeout = '{WAIT_S}s'"))
                conn.execute(sqlalchemy.text("SELECT pg_advisory_lock(:k)"), {"k": _key(purpose)})
            else:
                got = conn.execute(
                    sqlalchemy.text("SELECT pg_try_advisory_lock(:k)"), {"k": _key(purpose)}
                ).scalar()
                if not got:
                    raise LockBusy(purpose)
            conn.commit()
            try:
                yield
            finally:
                conn.execute(sqlalchemy.text("SELECT pg_advisory_unlock(:k)"), {"k": _key(purpose)})
                conn.commit()
    finally:
        engine.dispose()


@contextmanager
def _redis_lock(url: str, purpose: str, wait: bool = True) -> Iterator[None]:
    import redis

    client = redis.Redis.from_url(url)
    lock = client.lock(
        f"gan-pipeline:lock:{purpose}",
        timeout=REDIS_LOCK_TTL_S,
        blocking_timeout=WAIT_S,
        thread_local=False,  # the keep-alive thread extends it
    )
    if not lock.acquire(blocking=wait):
        client.close()
        if not wait:
            raise LockBusy(purpose)
        raise TimeoutError(f"could not take the {purpose} lock in {WAIT_S} s")
    done = threading.Event()

    def keep_alive() -> None:
        while not done.wait(REDIS_LOCK_TTL_S / 3):
            lock.extend(REDIS_LOCK_TTL_S, replace_ttl=True)

    thread = threading.Thread(target=keep_alive, name="store-lock-keepalive", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()
        lock.release()
        client.close()
