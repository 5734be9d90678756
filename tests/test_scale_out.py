"""Issue 11: many ``pipeline tune`` workers on one study, started in one instant on fresh
stores — PostgreSQL, Redis, the default journal file — with a fresh MLflow SQLite store.

Real processes (``tests/race_worker.py``: each imports everything, then every round is
released for all workers at once through a file), real PostgreSQL/Redis, real training on
a four-step budget. Every round starts on new, empty stores, so each round races MLflow's
schema creation, Optuna's schema and study creation and the election of the parent run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient

from pipeline.stores.study_workers import WORKERS_ATTR
from tests.conftest import EXPERIMENTS, ROOT, TINY_SMALL
from tests.servers import fresh_database, fresh_redis_db

WORKERS = 3
TRIALS_EACH = 4
#: rounds on PostgreSQL (the issue's main case; each a new race on new stores, ~5-15 s on
#: 2 cores); the Redis and journal tests run two
ROUNDS = 3


def tune_args(folder: Path, study: str, storage: str | None, n_trials: int) -> list[str]:
    args = [
        "tune",
        str(EXPERIMENTS / "wgan_gp_grid25.yaml"),
        "--n-trials",
        str(n_trials),
        "--sampler",
        "random",
        "--pruner",
        "none",
        "--study-name",
        study,
        "--tracking-uri",
        f"sqlite:///{folder}/mlflow.db",
    ]
    if storage:
        args += ["--storage", storage]
    for o in TINY_SMALL:
        args += ["-o", o]
    return args


def _wait_for(paths: list[Path], procs: list[subprocess.Popen], timeout: float) -> None:
    """Until worker ``i`` wrote ``paths[i]``, for every ``i``; fail if one ended without."""
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        for path, proc in zip(paths, procs, strict=True):
            if proc.poll() is not None and not path.exists():
                out = proc.stdout.read() if proc.stdout else ""
                pytest.fail(f"a worker ended early (exit {proc.returncode}):\n{out}")
        if time.monotonic() > deadline:
            pytest.fail(f"workers did not get to {paths[0].name} in {timeout} s")
        time.sleep(0.01)


@contextmanager
def workers(folder: Path, rounds: list[list[str]]) -> Iterator[Callable[[int], list[int]]]:
    """``WORKERS`` race-worker processes; yields ``release(r)``: start round ``r`` in all
    of them at once, wait until it ended everywhere, return their exit statuses."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rounds.json").write_text(json.dumps(rounds))
    env = dict(os.environ, OMP_NUM_THREADS="1", MLFLOW_DISABLE_TELEMETRY="true")
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    procs = [
        subprocess.Popen(  # in the test's folder: the artifact root (./mlartifacts) is there
            [sys.executable, "-m", "tests.race_worker", str(folder), str(i)],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(WORKERS)
    ]

    def release(r: int) -> list[int]:
        _wait_for([folder / f"ready_{r}_{i}" for i in range(WORKERS)], procs, 120)
        (folder / f"go_{r}").touch()
        done = [folder / f"done_{r}_{i}" for i in range(WORKERS)]
        _wait_for(done, procs, 240)
        return [int(p.read_text()) for p in done]

    try:
        yield release
        for proc in procs:
            out, _ = proc.communicate(timeout=60)
            print(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def check_one_study(store: Path, study_name: str, storage) -> None:
    """12 finished trials, distinct numbers; 12 child runs under one parent, FINISHED
    after the last child ended; no worker left registered."""
    study = optuna.load_study(study_name=study_name, storage=storage)
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * (WORKERS * TRIALS_EACH)
    assert sorted(t.number for t in trials) == list(range(WORKERS * TRIALS_EACH))
    assert storage.get_study_system_attrs(study._study_id)[WORKERS_ATTR] == []

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    experiment = client.get_experiment_by_name("wgan_gp_grid25")
    runs = client.search_runs([experiment.experiment_id], max_results=1000)
    parents = [r for r in runs if r.data.tags.get("pipeline.role") == "study"]
    assert len(parents) == 1, [r.info.run_id for r in parents]
    parent = parents[0]
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    children = [r for r in runs if r is not parent]
    assert len(children) == WORKERS * TRIALS_EACH
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert sorted(int(r.data.tags["optuna.trial_number"]) for r in children) == list(
        range(WORKERS * TRIALS_EACH)
    )
    assert parent.info.status == "FINISHED"
    assert {r.info.status for r in children} == {"FINISHED"}
    assert parent.info.end_time >= max(r.info.end_time for r in children)
    # the last worker logged the whole study's table
    table = Path(client.download_artifacts(parent.info.run_id, "trials.csv", str(store)))
    assert len(table.read_text().strip().splitlines()) == 1 + WORKERS * TRIALS_EACH


def race(
    tmp_path: Path,
    storage_for: Callable[[int, Path], str | None],
    open_storage,
    n_rounds: int = ROUNDS,
) -> None:
    """``n_rounds`` rounds of ``WORKERS`` × ``TRIALS_EACH`` trials, each on new stores."""
    stores = [tmp_path / f"round{r}" for r in range(n_rounds)]
    studies = [f"race-{uuid.uuid4().hex[:8]}" for _ in stores]
    rounds = [
        tune_args(store, study, storage_for(r, store), TRIALS_EACH)
        for r, (store, study) in enumerate(zip(stores, studies, strict=True))
    ]
    with workers(tmp_path / "sync", rounds) as release:
        for r, store in enumerate(stores):
            began = time.monotonic()
            assert release(r) == [0] * WORKERS, f"round {r}"
            print(f"round {r}: {time.monotonic() - began:.1f} s")
            check_one_study(store, studies[r], open_storage(r, store))


@pytest.mark.slow
def test_workers_starting_at_once_on_fresh_postgresql(tmp_path):
    with (
        fresh_database("race0") as d0,
        fresh_database("race1") as d1,
        fresh_database("race2") as d2,
    ):
        databases = [f"postgresql://postgres@127.0.0.1:5432/{d}" for d in (d0, d1, d2)]
        assert len(databases) == ROUNDS
        race(
            tmp_path,
            lambda r, store: databases[r],
            lambda r, store: optuna.storages.RDBStorage(databases[r]),
        )


@pytest.mark.slow
def test_workers_starting_at_once_on_fresh_redis(tmp_path):
    with fresh_redis_db() as url:
        # a new Redis database; a new study in it every round, a new MLflow store too
        from optuna.storages.journal import JournalRedisBackend

        race(
            tmp_path,
            lambda r, store: url,
            lambda r, store: optuna.storages.JournalStorage(JournalRedisBackend(url)),
            n_rounds=2,
        )


@pytest.mark.slow
def test_workers_starting_at_once_on_the_default_journal_file(tmp_path):
    def open_storage(r: int, store: Path):
        backend = optuna.storages.journal.JournalFileBackend(str(store / "optuna.journal"))
        return optuna.storages.JournalStorage(backend)

    race(tmp_path, lambda r, store: None, open_storage, n_rounds=2)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_workers_log_through_a_tracking_server_on_postgresql(tmp_path):
    """`pipeline ui` serves a PostgreSQL MLflow backend with an artifact root (mlflow.yaml);
    `pipeline tune --workers 2` logs through it (http://) to a PostgreSQL Optuna storage:
    one parent FINISHED, two children, artifacts uploaded through the server into the
    root (no shared disk needed), and the server runs one uvicorn worker, no job runner."""
    import signal
    import urllib.request

    from tests.test_secrets import argv_of_children

    with fresh_database("srv_mlflow") as mlflow_db, fresh_database("srv_optuna") as optuna_db:
        server_dir, worker_dir = tmp_path / "server", tmp_path / "worker"
        server_dir.mkdir()
        worker_dir.mkdir()
        root = tmp_path / "artifact-root"
        (server_dir / "mlflow.yaml").write_text(
            f"tracking_uri: postgresql://postgres@127.0.0.1:5432/{mlflow_db}\n"
            f"artifact_location: {root}\n"
        )
        port = _free_port()
        exe = os.path.join(os.path.dirname(sys.executable), "pipeline")
        # an MLFLOW_TRACKING_URI in the environment beats mlflow.yaml: the server must
        # read the file
        env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
        ui = subprocess.Popen(
            [exe, "ui", "--no-browser", "--port", str(port)],
            cwd=server_dir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                assert ui.poll() is None and time.monotonic() < deadline, "server did not start"
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                        break
                except OSError:
                    time.sleep(0.5)
            children = list(argv_of_children(ui.pid).values())
            assert [a for a in children if " uvicorn " in f" {a} "], children
            assert " --workers 1" in next(a for a in children if " mlflow server " in a)
            assert not [a for a in children if "huey" in a], children
            args = tune_args(
                worker_dir, "served", f"postgresql://postgres@127.0.0.1:5432/{optuna_db}", 2
            )
            args[args.index("--tracking-uri") + 1] = f"http://127.0.0.1:{port}"
            tune = subprocess.run(
                [exe, *args, "--workers", "2"],
                cwd=worker_dir,
                env=dict(env, OMP_NUM_THREADS="1"),
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert tune.returncode == 0, tune.stdout + tune.stderr
            client = MlflowClient(f"http://127.0.0.1:{port}")
            experiment = client.get_experiment_by_name("wgan_gp_grid25")
            assert experiment.artifact_location.startswith("mlflow-artifacts:/")
            runs = client.search_runs([experiment.experiment_id])
            parents = [r for r in runs if r.data.tags.get("pipeline.role") == "study"]
            assert [p.info.status for p in parents] == ["FINISHED"]
            assert len(runs) == 3
            table = root / experiment.experiment_id / parents[0].info.run_id / "artifacts"
            assert (table / "trials.csv").is_file()
            # the server's backend is the PostgreSQL database mlflow.yaml names
            backend = MlflowClient(f"postgresql://postgres@127.0.0.1:5432/{mlflow_db}")
            assert backend.get_run(parents[0].info.run_id).info.status == "FINISHED"
        finally:
            ui.send_signal(signal.SIGTERM)
            ui.communicate(timeout=60)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed to be used")
def test_a_dead_worker_on_another_host_leaves_the_worker_list(tmp_path):
    """Its pid means nothing here, but Optuna's heartbeat finds its trial dead: the same
    callback that retries the trial drops the worker, so the last live worker can end the
    parent run; a live worker of this host stays."""
    import socket

    from pipeline.stores import study_workers
    from pipeline.stores.dead_trials import RetryDeadTrial, Worker, fail_dead_trials

    with fresh_database("dead_remote") as name:
        url = f"postgresql://postgres@127.0.0.1:5432/{name}"
        with pytest.warns(optuna.exceptions.ExperimentalWarning):
            storage = optuna.storages.RDBStorage(url, heartbeat_interval=1, grace_period=2)
        study = optuna.create_study(study_name="remote", storage=storage)
        here = Worker.current()
        remote = Worker(socket.gethostname() + "-b", here.machine, 12345, 1)
        study_workers.join(study, remote)
        study_workers.join(study, here)
        assert study_workers.workers(study) == [remote, here]
        trial = study.ask()
        trial.suggest_float("x", 0, 1)
        trial.set_user_attr("worker", remote.as_attr())
        storage.record_heartbeat(trial._trial_id)
        forgotten = []

        def forget(s, worker):
            forgotten.append(worker)
            study_workers.forget(s, worker)

        callback = RetryDeadTrial(None, on_dead_worker=forget)
        assert fail_dead_trials(study, callback) == []  # heartbeat fresh: alive
        assert study_workers.workers(study) == [remote, here]
        time.sleep(3.5)
        assert fail_dead_trials(study, callback) == [0]
        assert forgotten == [remote]
        assert study_workers.workers(study) == [here]
        assert study_workers.leave(study, here) is True  # the last one
