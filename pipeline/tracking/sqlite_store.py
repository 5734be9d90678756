"""A new MLflow SQLite store is made whole or not at all.

MLflow creates its schema the first time a client opens a ``sqlite:///`` file: some forty
Alembic migrations, several seconds, rebuilding tables through ``_alembic_tmp_<table>``
copies. A process killed in that window left a file every later command failed on
(``table _alembic_tmp_… already exists``, issue 23). So a store that does not exist yet is
built beside its target (``.<name>.creating-<pid>``) and renamed into place
(``os.replace``: atomic on one file system) once MLflow has finished, under the store's lock
(:func:`pipeline.tracking.locks.store_lock`, held by the caller); a kill leaves only the
hidden file, which the next creation removes. A store already left half-made by an older
version is recognised (an ``_alembic_tmp_`` table, or no ``alembic_version``) and named
with what to do, in one line.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

from pipeline.errors import ConfigError


def sqlite_file(uri: str) -> Path | None:
    """The file of a ``sqlite:///`` tracking URI; None for anything else."""
    if not uri.lower().startswith("sqlite:"):
        return None
    from sqlalchemy.engine import make_url

    database = make_url(uri).database
    if database in (None, "", ":memory:"):
        return None
    return Path(database)


def prepare(uri: str) -> None:
    """Create ``uri``'s SQLite store whole when it does not exist; refuse a half-made one.
    Call it under the store's lock; anything but a SQLite file is left alone."""
    path = sqlite_file(uri)
    if path is None:
        return
    if path.exists():
        check_whole(path.resolve(), uri)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.creating-*"):  # a killed creation's
        stale.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.creating-{os.getpid()}")
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    # the store MlflowClient would open (its default artifact root for SQL stores: ./mlruns,
    # used by MLflow's Default experiment only), made in the hidden file, its engine closed
    # its two INFO lines ("Creating initial MLflow database tables...") say nothing to do
    chatter = logging.getLogger("mlflow.store.db.utils")
    level = chatter.level
    chatter.setLevel(logging.WARNING)
    try:
        store = SqlAlchemyStore(f"sqlite:///{tmp}", "./mlruns")
    finally:
        chatter.setLevel(level)
    store.engine.dispose()
    os.replace(tmp, path)


def check_whole(path: Path, uri: str) -> None:
    """Refuse a store whose schema creation was cut short, naming it and the way out."""
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            runs = db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] if "runs" in tables else 0
    except sqlite3.DatabaseError as exc:
        raise ConfigError(
            "--tracking-uri", f"{path} is not a readable SQLite database ({exc}); move it away"
        ) from None
    if not tables:
        return  # an empty file (touched): MLflow creates its schema in it
    torn = sorted(t for t in tables if t.startswith("_alembic_tmp_"))
    if torn or "alembic_version" not in tables:
        what = f"table {torn[0]}" if torn else "no alembic_version table"
        fix = (
            f"it holds no runs: delete it (rm {path}) and run again"
            if runs == 0
            else f"it holds {runs} runs: back it up, then try mlflow db upgrade {uri}"
        )
        raise ConfigError(
            "--tracking-uri",
            f"{path} was left half-made by a process stopped while MLflow created its "
            f"tables ({what}); {fix}",
        )
