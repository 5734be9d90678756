"""A password in the storage or tracking URL goes nowhere: not to stdout or stderr, not to
MLflow tags or params, not to the Optuna study, not to another process's argv.

Real processes (``pipeline tune``, ``best``, ``train``, ``ui``) on real PostgreSQL
databases; the server trusts local connections, so a URL with any password connects.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import optuna
import pytest
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from tests.conftest import EXPERIMENTS, TINY_SMALL
from tests.servers import PG_HOST, PG_PORT, connect, fresh_database

SECRET = "SeCrEt123"
EXE = os.path.join(os.path.dirname(sys.executable), "pipeline")


def pipeline(cwd: Path, *args: str) -> str:
    """Run ``pipeline ARGS``; its stdout and stderr, after checking it succeeded."""
    done = subprocess.run([EXE, *args], cwd=cwd, capture_output=True, text=True, timeout=300)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    return out


def overrides() -> list[str]:
    return [arg for o in TINY_SMALL for arg in ("-o", o)]


def text_columns_holding(database: str, needle: str) -> list[str]:
    """Every ``table.column`` of text type in ``database`` whose value contains ``needle``."""
    with connect(database) as db:
        columns = db.execute(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = 'public' AND data_type IN ('text', 'character varying')"
        ).fetchall()
        assert columns, f"no tables in {database}"
        return [
            f"{table}.{column}"
            for table, column in columns
            if db.execute(
                f'SELECT 1 FROM "{table}" WHERE "{column}" LIKE %s LIMIT 1', (f"%{needle}%",)
            ).fetchone()
        ]


def _processes() -> dict[int, tuple[int, int]]:
    """pid → (parent pid, process group) of every process."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (int(fields[1]), int(fields[2]))
    return found


def argv_of_children(root: int) -> dict[int, str]:
    """The command lines of ``root``'s descendants and of every process in their groups
    (the MLflow server is a session of its own, its workers in its group)."""
    procs = _processes()
    members = {root}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _) in procs.items() if ppid in members} - members
        groups = {procs[pid][1] for pid in members | more if pid in procs and pid != root}
        more |= {pid for pid, (_, pgrp) in procs.items() if pgrp in groups} - members
        members |= more
        grew = bool(more)
    argv = {}
    for pid in members - {root}:
        try:
            argv[pid] = (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
        except OSError:
            continue
    return {pid: raw.decode(errors="replace") for pid, raw in argv.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_password_in_the_urls_goes_nowhere(tmp_path):
    with fresh_database("gp_secret_optuna") as optuna_db, fresh_database("gp_secret_mlflow") as db:
        auth = f"postgres:{SECRET}@{PG_HOST}:{PG_PORT}"
        storage = f"postgresql://{auth}/{optuna_db}"
        tracking = f"postgresql://{auth}/{db}"
        shown = f"postgresql://postgres:***@{PG_HOST}:{PG_PORT}/{optuna_db}"
        experiment = str(EXPERIMENTS / "wgan_gp_grid25.yaml")
        store = ["--tracking-uri", tracking]

        outputs = {
            "tune": pipeline(
                tmp_path, "tune", experiment, "--n-trials", "1", "--storage", storage,
                *store, *overrides(),
            ),
            "best": pipeline(tmp_path, "best", "wgan_gp_grid25", "--storage", storage, *store),
            "best --json": pipeline(
                tmp_path, "best", "wgan_gp_grid25", "--storage", storage, "--json", *store
            ),
            "train": pipeline(tmp_path, "train", experiment, "--no-progress", *store, *overrides()),
        }  # fmt: skip
        assert f"in {shown};" in outputs["tune"]  # the URL is shown, masked
        assert f"({shown})" in outputs["best"]
        assert "postgres:***@" in outputs["train"]
        for command, out in outputs.items():
            assert SECRET not in out, command

        # MLflow: tags and params of every run, names and values
        client = MlflowClient(tracking)
        experiments = client.search_experiments(view_type=ViewType.ALL)
        runs = client.search_runs(
            [e.experiment_id for e in experiments], run_view_type=ViewType.ALL
        )
        assert len(runs) == 3  # the study's parent, its trial, the training
        for run in runs:
            for key, value in {**run.data.tags, **run.data.params}.items():
                assert SECRET not in key and SECRET not in value, (run.info.run_name, key)
        parents = [r for r in runs if r.data.tags.get("pipeline.role") == "study"]
        assert [p.data.tags["optuna.storage"] for p in parents] == [shown]
        # Optuna: the study's and the trials' attributes
        study = optuna.load_study(study_name="wgan_gp_grid25", storage=storage)
        assert [t.state.name for t in study.trials] == ["COMPLETE"]
        attrs = [study.user_attrs, *(t.user_attrs for t in study.trials)]
        assert "mlflow_parent_run_id" in attrs[0] and "mlflow_run_id" in attrs[1]
        assert SECRET not in repr(attrs)
        # and nowhere else in either database, nor in a file (artifacts, MLmodel, …)
        assert text_columns_holding(db, SECRET) == []
        assert text_columns_holding(optuna_db, SECRET) == []
        assert text_columns_holding(db, "postgres:***@")  # the check can find a URL
        files = [p for p in tmp_path.rglob("*") if p.is_file()]
        assert any(p.name == "MLmodel" for p in files)
        assert [p for p in files if SECRET.encode() in p.read_bytes()] == []

        # pipeline ui: the MLflow server and its workers get the store by environment
        port = free_port()
        ui = subprocess.Popen(
            [EXE, "ui", "wgan_gp_grid25", "--no-browser", "--port", str(port), *store],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.time() + 120
            healthy = False
            while time.time() < deadline and not healthy and ui.poll() is None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                        healthy = True
                except OSError:
                    time.sleep(1)
            children = argv_of_children(ui.pid)
        finally:
            ui.send_signal(signal.SIGTERM)
            out = ui.communicate(timeout=60)[0]
        assert healthy, out
        assert any(" mlflow server " in argv for argv in children.values()), children
        assert any("uvicorn" in argv for argv in children.values()), children
        leaked = {pid: argv for pid, argv in children.items() if SECRET in argv}
        assert leaked == {}
        assert SECRET not in out and "(store: postgresql://postgres:***@" in out
