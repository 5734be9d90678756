"""A `pipeline tune` worker killed mid-trial: its trial is failed, ended in MLflow, retried once.

Real processes and signals, the real journal file and a real PostgreSQL database (a
throw-away one per test), a real MLflow SQLite store.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from pipeline.cli.commands import main
from pipeline.stores import dead_trials
from pipeline.stores.dead_trials import RetryDeadTrial, Worker, fail_dead_trials, is_dead
from tests.conftest import EXPERIMENTS

STUDY = "wgan_gp_grid25"
#: the killed trial and its retry run this budget: long enough (a few seconds after its
#: MLflow run starts) to be killed mid-trial, short enough for the retry
BUDGET = [
    "train.steps=40",
    "train.eval_every=20",
    "train.log_every=10",
    "train.eval_samples=200",
    "model.g_width=16",
    "model.d_width=16",
    "train.batch_size=32",
]
PG = "postgresql://{user}@127.0.0.1:5432/{db}"


# -- PostgreSQL: one throw-away database per test -------------------------------------
def _pg_connect(db: str):
    """psycopg (3): SQLAlchemy 2.1's driver for a plain ``postgresql://`` URL."""
    import psycopg

    last: Exception | None = None
    for user in ("postgres", "root"):
        try:
            conn = psycopg.connect(
                host="127.0.0.1", port=5432, user=user, dbname=db, autocommit=True
            )
            return conn, user
        except psycopg.OperationalError as exc:
            last = exc
    raise last  # type: ignore[misc]


@pytest.fixture
def pg_url():
    """A new PostgreSQL database (dropped afterwards); skipped outside CI when unreachable."""
    try:
        admin, user = _pg_connect("test")
    except Exception as exc:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"PostgreSQL on 127.0.0.1:5432 unreachable: {exc}")
    name = f"killed_workers_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cur:
        cur.execute(f'CREATE DATABASE "{name}"')
    try:
        yield PG.format(user=user, db=name)
    finally:
        with admin.cursor() as cur:
            cur.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


# -- helpers ---------------------------------------------------------------------------
def journal(folder: Path):
    return optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal"))
    )


def load_study(storage, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage)


def tune_args(tracking_uri: str, name: str, storage_url: str | None) -> list[str]:
    """The session's MLflow store (creating one costs ~10 s), a study of its own."""
    args = [
        "tune",
        str(EXPERIMENTS / "wgan_gp_grid25.yaml"),
        "--n-trials",
        "1",
        "--seed",
        "0",
        "--study-name",
        name,
        "--experiment-name",
        name,
        "--tracking-uri",
        tracking_uri,
    ]
    if storage_url:
        args += ["--storage", storage_url]
    for o in BUDGET:
        args += ["-o", o]
    return args


def kill_mid_trial(
    tmp_path: Path, args: list[str], open_storage, name: str
) -> optuna.trial.FrozenTrial:
    """Start ``pipeline <args>``; SIGKILL it once its trial runs with an MLflow run."""
    exe = os.path.join(os.path.dirname(sys.executable), "pipeline")
    proc = subprocess.Popen(
        [exe, *args], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline:
            assert proc.poll() is None, "the worker ended before it was killed:\n" + (
                proc.stdout.read() if proc.stdout else ""
            )
            try:
                trials = load_study(open_storage(), name).trials
            except (KeyError, FileNotFoundError, ValueError):
                trials = []  # no study yet
            if trials and "mlflow_run_id" in trials[0].user_attrs:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=30)
                return trials[0]
            time.sleep(0.05)
        pytest.fail("the trial did not start within 240 s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


def check_killed_trial_is_failed_and_retried(
    tmp_path, monkeypatch, tracking_uri, storage_url, open_storage
):
    monkeypatch.chdir(tmp_path)
    name = f"killed-{uuid.uuid4().hex[:8]}"
    args = tune_args(tracking_uri, name, storage_url)
    began = time.time()
    killed = kill_mid_trial(tmp_path, args, open_storage, name)
    print(f"\nworker killed {time.time() - began:.1f} s after its start")
    client = MlflowClient(tracking_uri)
    run_id = killed.user_attrs["mlflow_run_id"]

    # what the kill leaves: RUNNING in Optuna and in MLflow
    dead = load_study(open_storage(), name).trials[0]
    assert dead.state.name == "RUNNING"
    assert client.get_run(run_id).info.status == "RUNNING"

    # `pipeline best` does not count it as running (and changes nothing)
    best = ["best", name, "--json", "--tracking-uri", tracking_uri]
    if storage_url:
        best += ["--storage", storage_url]
    result = CliRunner().invoke(main, best)
    assert result.exit_code == 0, result.output
    counts = json.loads(result.output)["trials"]
    assert counts["RUNNING"] == 0 and counts["DEAD"] == 1, counts
    assert load_study(open_storage(), name).trials[0].state.name == "RUNNING"

    # the same command again
    start = time.time()
    result = CliRunner().invoke(main, args)
    took = time.time() - start
    assert result.exit_code == 0, result.output

    study = load_study(open_storage(), name)
    trials = study.trials
    assert [t.state.name for t in trials] == ["FAIL", "COMPLETE"], result.output
    dead, retry = trials
    detected = dead.datetime_complete.timestamp() - start
    print(
        f"\nkilled trial failed {detected:.1f} s after the second command started, "
        f"which took {took:.1f} s"
    )
    assert "died" in dead.user_attrs["fail_reason"]
    assert str(killed.user_attrs["worker"]["pid"]) in dead.user_attrs["fail_reason"]
    assert retry.params == dead.params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        assert optuna.storages.RetryHeartbeatStaleTrialCallback.retried_trial_number(retry) == 0
    assert retry.user_attrs["retry_of"] == 0
    assert retry.user_attrs["mlflow_run_id"] != run_id

    dead_run = client.get_run(run_id)
    assert dead_run.info.status == "FAILED"
    assert "died" in dead_run.data.tags["failure_reason"]
    assert dead_run.data.tags["optuna.state"] == "FAIL"
    assert dead_run.data.tags["optuna.retried_by"] == "1"
    retry_run = client.get_run(retry.user_attrs["mlflow_run_id"])
    assert retry_run.info.status == "FINISHED"
    assert retry_run.data.tags["optuna.retry_of"] == "0"
    assert retry_run.data.tags["optuna.trial_number"] == "1"
    assert retry_run.data.params["trial.train.n_critic"] == str(dead.params["train.n_critic"])

    assert "trial    0  FAIL" in result.output and "retried as trial 1" in result.output
    assert "2 trials in the study (1 complete, 1 fail)" in result.output
    assert not study.get_trials(states=(optuna.trial.TrialState.RUNNING,))
    # the study's parent run: its trials table has no RUNNING trial either
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    table = Path(client.download_artifacts(parent.info.run_id, "trials.csv", str(tmp_path)))
    assert "RUNNING" not in table.read_text() and "FAIL" in table.read_text()


# -- end to end ---------------------------------------------------------------------------
@pytest.mark.slow
def test_killed_worker_journal_trial_is_failed_and_retried(tmp_path, monkeypatch, shared_store):
    uri = shared_store.tracking_uri
    folder = Path(uri.removeprefix("sqlite:///")).parent  # the default: beside mlflow.db
    check_killed_trial_is_failed_and_retried(
        tmp_path, monkeypatch, uri, None, lambda: journal(folder)
    )


@pytest.mark.slow
def test_killed_worker_postgresql_trial_is_failed_at_once_and_retried(
    tmp_path, monkeypatch, shared_store, pg_url
):
    check_killed_trial_is_failed_and_retried(
        tmp_path,
        monkeypatch,
        shared_store.tracking_uri,
        pg_url,
        lambda: optuna.storages.RDBStorage(pg_url),
    )


# -- the liveness check ---------------------------------------------------------------
def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])


def test_liveness_of_a_process_on_this_host():
    here = Worker.current()
    proc = _sleeper()
    try:
        start = dead_trials.process_start(proc.pid)
        assert start is not None and start > 0
        alive = Worker(here.host, here.machine, proc.pid, start)
        assert not is_dead(alive, here)
        # the same pid with another start time is another (newer) process: dead
        assert is_dead(Worker(here.host, here.machine, proc.pid, start - 1), here)
        proc.send_signal(signal.SIGKILL)
        time.sleep(0.2)  # killed but not reaped: a zombie is dead too
        assert dead_trials.process_start(proc.pid) is None
        assert is_dead(alive, here)
    finally:
        proc.kill()
        proc.wait()
    assert is_dead(alive, here)


def test_a_trial_of_another_host_is_never_failed_by_the_pid_check():
    here = Worker.current()
    proc = _sleeper()
    start = dead_trials.process_start(proc.pid)
    proc.kill()
    proc.wait()
    assert is_dead(Worker(here.host, here.machine, proc.pid, start), here)
    assert not is_dead(Worker(here.host + "-other", here.machine, proc.pid, start), here)
    # the same host name on another machine (boot id / pid namespace) is another host
    assert not is_dead(Worker(here.host, "other-boot/pid:[1]", proc.pid, start), here)


def _dead_worker(host: str | None = None) -> dict:
    here = Worker.current()
    proc = _sleeper()
    start = dead_trials.process_start(proc.pid)
    proc.kill()
    proc.wait()
    return Worker(host or here.host, here.machine, proc.pid, start).as_attr()


def _study_with_running_trials(storage, workers: list[dict]) -> optuna.Study:
    study = optuna.create_study(study_name=STUDY, storage=storage, load_if_exists=True)
    for worker in workers:
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr("worker", worker)
    return study


def test_fail_dead_trials_judges_only_this_hosts_dead_processes(tmp_path):
    alive = Worker.current().as_attr()
    study = _study_with_running_trials(
        journal(tmp_path), [_dead_worker(), alive, _dead_worker(host="elsewhere")]
    )
    lines: list[str] = []
    assert fail_dead_trials(study, RetryDeadTrial(None, lines.append)) == [0]
    states = [t.state.name for t in load_study(journal(tmp_path)).trials]
    assert states == ["FAIL", "RUNNING", "RUNNING", "WAITING"]
    assert lines and "retried as trial 3" in lines[0]
    # a retry that dies is not retried again
    retry = study.ask()
    assert retry.number == 3
    retry.set_user_attr("worker", _dead_worker())
    assert fail_dead_trials(study, RetryDeadTrial(None, lines.append)) == [3]
    assert "not retried again" in lines[-1]
    assert [t.state.name for t in load_study(journal(tmp_path)).trials] == [
        "FAIL",
        "RUNNING",
        "RUNNING",
        "FAIL",
    ]


def _race(open_storage, n: int = 4) -> list[list[int]]:
    """``n`` threads, each with its own storage connection, fail the same dead trial."""
    barrier = threading.Barrier(n)
    results: list[list[int]] = [[] for _ in range(n)]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            study = load_study(open_storage())
            callback = RetryDeadTrial(None)
            barrier.wait()
            results[i] = fail_dead_trials(study, callback)
        except BaseException as exc:  # a thread's error must fail the test
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_two_workers_starting_at_once_retry_a_dead_trial_once_journal(tmp_path):
    _study_with_running_trials(journal(tmp_path), [_dead_worker()])
    results = _race(lambda: journal(tmp_path))
    assert sorted(results) == [[], [], [], [0]]
    trials = load_study(journal(tmp_path)).trials
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]


def test_two_workers_starting_at_once_retry_a_dead_trial_once_postgresql(pg_url):
    _study_with_running_trials(optuna.storages.RDBStorage(pg_url), [_dead_worker()])
    results = _race(lambda: optuna.storages.RDBStorage(pg_url))
    assert sorted(results) == [[], [], [], [0]]
    trials = load_study(optuna.storages.RDBStorage(pg_url)).trials
    assert [t.state.name for t in trials] == ["FAIL", "WAITING"]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_silent_worker_on_another_host_is_failed_by_heartbeat(shared_store, pg_url):
    """PostgreSQL heartbeats (here 1 s, grace 2 s): the same callback ends the MLflow run."""
    tracking = shared_store
    client = MlflowClient(tracking.tracking_uri)
    run = client.create_run(client.create_experiment(f"heartbeat-{uuid.uuid4().hex[:8]}"))
    with pytest.warns(optuna.exceptions.ExperimentalWarning):
        storage = optuna.storages.RDBStorage(pg_url, heartbeat_interval=1, grace_period=2)
    study = _study_with_running_trials(storage, [_dead_worker(host=socket.gethostname() + "-b")])
    trial = study.trials[0]
    storage.set_trial_user_attr(trial._trial_id, "mlflow_run_id", run.info.run_id)
    storage.record_heartbeat(trial._trial_id)
    callback = RetryDeadTrial(tracking)
    assert fail_dead_trials(study, callback) == []  # heartbeat fresh, other host: alive
    assert dead_trials.state_counts(study) == {"RUNNING": 1}
    time.sleep(3.5)
    assert dead_trials.state_counts(study) == {"DEAD": 1}
    assert fail_dead_trials(study, callback) == [0]
    assert [t.state.name for t in study.trials] == ["FAIL", "WAITING"]
    assert study.trials[1].user_attrs["retry_of"] == 0
    ended = client.get_run(run.info.run_id)
    assert ended.info.status == "FAILED"
    assert "no heartbeat" in ended.data.tags["failure_reason"]
    assert ended.data.tags["optuna.retried_by"] == "1"
