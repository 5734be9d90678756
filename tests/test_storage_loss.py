"""A tune whose Optuna storage dies: a PostgreSQL cluster of the test's own, stopped as a
crash would stop it (``pg_ctl -m immediate``) while a trial trains. The tune ends in one
``error:`` line naming the storage, its MLflow runs end FAILED with that reason (not
Optuna's "invalid data in the commit"), and when the server is back the trial it cut off is
found dead, failed and retried, as the line promises. Real processes, a real cluster."""

from __future__ import annotations

import optuna
import pytest
from mlflow.tracking import MlflowClient

from pipeline.stores import dead_trials
from pipeline.stores.storage_loss import StorageUnavailable, storage_lost
from tests.conftest import killed_at_exit
from tests.servers import private_postgres
from tests.test_tracking_server_loss import start_endless, wait_for_training


@pytest.mark.slow
def test_postgresql_killed_mid_tune_ends_in_one_line_and_the_trial_is_retried(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    store = f"sqlite:///{work}/mlflow.db"
    with private_postgres() as pg:
        tune = ["--n-trials", "2", "--storage", pg.url, "--tracking-uri", store]
        proc = start_endless("tune", work, *tune, "-o", "tune.objective={metric: w1}")
        with killed_at_exit(proc):
            wait_for_training(store, proc)
            pg.crash()
            _, err = proc.communicate(timeout=180)

        # one line, exit 1: the storage named, what is kept, what to do
        assert proc.returncode == 1 and "Traceback" not in err, err
        lines = [ln for ln in err.strip().splitlines() if " INFO mlflow" not in ln]
        assert len(lines) == 1, err
        assert lines[0].startswith(f"error: Optuna storage {pg.url} unreachable ("), lines[0]
        assert "rerun the same command" in lines[0] and "invalid data" not in lines[0]

        # both MLflow runs ended FAILED, with that reason
        client = MlflowClient(store)
        runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        by_role = {r.data.tags["pipeline.role"]: r for r in runs}
        assert sorted(by_role) == ["study", "trial"]
        for run in by_role.values():
            assert run.info.status == "FAILED"
            assert f"Optuna storage {pg.url} unreachable" in run.data.tags["failure_reason"]

        # back again: the cut-off trial is still RUNNING there; the next start fails it and
        # queues its retry (what `pipeline tune` does first when it starts)
        pg.start()
        study = optuna.load_study(study_name="gan_ring8", storage=pg.url)
        [cut] = study.get_trials(deepcopy=False)
        assert cut.state == optuna.trial.TrialState.RUNNING
        assert dead_trials.fail_dead_trials(study, dead_trials.RetryDeadTrial(None)) == [0]
        states = [t.state for t in study.get_trials(deepcopy=False)]
        assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.WAITING]


def test_only_a_lost_connection_is_a_lost_storage():
    """psycopg's and redis's connection errors, however deep in the chain, say the storage
    is gone; SQLite's "database is locked" and a plain bug do not."""
    import sqlite3

    import psycopg
    import redis

    url = "postgresql://alice:s3cret@db.example:5432/optuna"
    for client_error in (
        psycopg.OperationalError("consuming input failed: server closed the connection\nhint"),
        redis.exceptions.ConnectionError("Error 111 connecting to localhost:6379."),
    ):
        try:
            try:
                raise client_error
            except Exception as exc:
                raise optuna.exceptions.StorageInternalError("invalid data in the commit") from exc
        except Exception as outer:
            lost = storage_lost(url, outer)
        assert isinstance(lost, StorageUnavailable) and lost.exit_code == 1
        assert str(client_error).splitlines()[0] in str(lost) and "hint" not in str(lost)
        assert "s3cret" not in str(lost) and "db.example:5432/optuna" in str(lost)
    for other in (sqlite3.OperationalError("database is locked"), ValueError("a bug")):
        assert storage_lost(url, other) is None
