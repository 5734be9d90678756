"""A new MLflow SQLite store is whole or absent: a process killed while MLflow creates its
tables leaves nothing the next command trips on, and a store half-made by an older version
is named with what to do. Real processes, real MLflow."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from pipeline.tracking.sqlite_store import check_whole
from tests.conftest import EXPERIMENTS


def tables(db) -> list[str]:
    with sqlite3.connect(db) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]


def train(folder, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "pipeline.cli", "train", str(EXPERIMENTS / "gan_ring8.yaml")]
    args += ["--no-progress", "-o", "train.steps=20", "-o", "train.eval_every=20", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(
        args, cwd=folder, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    "signum",
    [signal.SIGKILL, signal.SIGTERM, signal.SIGINT],
    ids=["kill-9", "SIGTERM", "Ctrl-C"],
)
def test_a_process_stopped_while_the_store_is_created_leaves_no_store(tmp_path, signum):
    proc = train(tmp_path)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".mlflow.db.creating-*")):  # MLflow is making its tables
        assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()
        time.sleep(0.005)
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    db = tmp_path / "mlflow.db"
    if db.exists():  # on a loaded machine the signal can land after the rename: then whole
        check_whole(db.resolve(), f"sqlite:///{db}")  # raises on a half-made store
        assert "alembic_version" in tables(db) and not any("_alembic_tmp" in t for t in tables(db))
    if signum != signal.SIGKILL:  # heard, not ignored: one line, the exit status of Ctrl-C
        assert proc.returncode == 130
        assert err.strip().splitlines()[-1] == (
            "interrupted while starting, before any run: nothing to resume"
        )

    again = train(tmp_path)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert "MLflow run " in out
    assert not list(tmp_path.glob(".mlflow.db.creating-*"))  # the killed one's file is gone


@pytest.mark.slow
@pytest.mark.parametrize(
    ("tables", "what"),
    [
        (
            ["CREATE TABLE alembic_version (v TEXT)", "CREATE TABLE _alembic_tmp_runs (x)"],
            "table _alembic_tmp_runs",
        ),
        (["CREATE TABLE experiments (x)"], "no alembic_version table"),
    ],
    ids=["alembic-tmp", "no-version"],
)
def test_a_half_made_store_is_named_in_one_line_with_the_way_out(tmp_path, tables, what):
    db = tmp_path / "mlflow.db"
    with sqlite3.connect(db) as conn:
        for sql in tables:
            conn.execute(sql)
    proc = train(tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert err.strip().splitlines() == [
        f"error: --tracking-uri: {db} was left half-made by a process stopped while MLflow "
        f"created its tables ({what}); it holds no runs: delete it (rm {db}) and run again"
    ]
    assert out == "" and not (tmp_path / "mlartifacts").exists()
