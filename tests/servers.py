"""The test machine's PostgreSQL and Redis (trust auth). CI must have them: with ``CI`` set a
test that needs one fails when it is unreachable; elsewhere it skips, saying why."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

PG_HOST = "127.0.0.1"
PG_PORT = 5432
PG_ADMIN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/test"
REDIS_URL = "redis://127.0.0.1:6379/0"


def _unavailable(what: str, exc: BaseException) -> None:
    message = f"{what} is unreachable: {type(exc).__name__}: {exc}"
    if os.environ.get("CI"):
        pytest.fail(f"{message} (CI must provide it)")
    pytest.skip(message)


def connect(dbname: str = "test"):
    """An autocommit connection to ``dbname`` as ``postgres``."""
    try:
        import psycopg

        return psycopg.connect(
            host=PG_HOST,
            port=PG_PORT,
            user="postgres",
            dbname=dbname,
            connect_timeout=3,
            autocommit=True,
        )
    except Exception as exc:
        _unavailable(f"PostgreSQL on {PG_HOST}:{PG_PORT}", exc)


def database_exists(name: str) -> bool:
    with connect() as admin:
        return (
            admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            is not None
        )


def unused_database_name(prefix: str = "gp_test") -> str:
    """A database name no one has (checked)."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    assert not database_exists(name)
    return name


@contextmanager
def fresh_database(prefix: str = "gp_test") -> Iterator[str]:
    """A new, empty PostgreSQL database, dropped afterwards (its connections ended)."""
    name = unused_database_name(prefix)
    with connect() as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with connect() as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def require_redis() -> str:
    """The Redis URL, after a PING."""
    try:
        import redis

        client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
        client.ping()
        client.close()
    except Exception as exc:
        _unavailable(f"Redis at {REDIS_URL}", exc)
    return REDIS_URL


@contextmanager
def fresh_redis_db() -> Iterator[str]:
    """The URL of an empty Redis database (1–15) claimed for this test, flushed afterwards.

    The claim is a ``SET NX`` key in a database that was empty, so two tests (or two
    helpers' test runs) never share one."""
    import redis

    require_redis()
    for db in range(1, 16):
        client = redis.Redis.from_url(f"{REDIS_URL.rsplit('/', 1)[0]}/{db}")
        claim = uuid.uuid4().hex
        if client.dbsize() == 0 and client.set("gan-pipeline-test-claim", claim, nx=True):
            if client.dbsize() != 1:  # someone else wrote there meanwhile: not ours
                client.delete("gan-pipeline-test-claim")
                client.close()
                continue
            try:
                yield f"{REDIS_URL.rsplit('/', 1)[0]}/{db}"
            finally:
                client.flushdb()
                client.close()
            return
        client.close()
    pytest.fail("no empty Redis database (1-15) to claim")


def _postgres_bin(name: str) -> str:
    """The path of PostgreSQL's ``name`` program (``initdb``, ``pg_ctl``): on PATH, else in
    Debian's ``/usr/lib/postgresql/<version>/bin``."""
    import glob
    import shutil

    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        _unavailable(f"PostgreSQL's {name}", FileNotFoundError(name))
    return found


class PrivateCluster:
    """A PostgreSQL cluster of a test's own (``initdb`` into a temp folder, ``pg_ctl`` on a
    free port, trust auth): a test may stop it as a crash would and start it again, which
    the machine's shared server must never see. As root, PostgreSQL's programs run as the
    ``postgres`` user (``initdb`` refuses root)."""

    def __init__(self, root: str, port: int) -> None:
        self.root = root
        self.port = port
        self.url = f"postgresql://postgres@{PG_HOST}:{port}/postgres"

    def run(self, name: str, *args: str) -> None:
        import subprocess

        cmd = [_postgres_bin(name), *args]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses={PG_HOST} -c fsync=off"
        data, log = f"{self.root}/data", f"{self.root}/log"
        self.run("pg_ctl", "-D", data, "-o", options, "-l", log, "-w", "-t", "60", "start")

    def crash(self) -> None:
        """Stop at once, every backend with it, no checkpoint (``-m immediate``): what a
        killed server leaves."""
        self.run("pg_ctl", "-D", f"{self.root}/data", "-m", "immediate", "-w", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivateCluster]:
    """A running :class:`PrivateCluster`, removed afterwards."""
    import shutil
    import socket
    import tempfile

    root = tempfile.mkdtemp(prefix="gp-pg-")
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    with socket.socket() as s:
        s.bind((PG_HOST, 0))
        port = s.getsockname()[1]
    cluster = PrivateCluster(root, port)
    try:
        cluster.run("initdb", "-D", f"{root}/data", "-A", "trust", "-U", "postgres")
        cluster.start()
        yield cluster
    finally:
        try:
            cluster.crash()
        except Exception:
            pass  # already stopped
        shutil.rmtree(root, ignore_errors=True)
