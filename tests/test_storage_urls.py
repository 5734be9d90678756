"""Bad storage and artifact locations are refused before anything exists; URLs are shown
without their passwords; PostgreSQL and Redis storages work (the extras are installed)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path

import optuna
import pytest
from click.testing import CliRunner
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from optuna.storages.journal import JournalRedisBackend

from pipeline.cli.commands import main
from pipeline.tracking.urls import mask_url, scrub
from tests.conftest import EXPERIMENTS, TINY_SMALL
from tests.servers import (
    PG_HOST,
    PG_PORT,
    database_exists,
    fresh_database,
    require_redis,
    unused_database_name,
)

EXPERIMENT = str(EXPERIMENTS / "wgan_gp_grid25.yaml")


def tune(*args: str):
    cmd = ["tune", EXPERIMENT, "--n-trials", "1", *args]
    for o in TINY_SMALL:
        cmd += ["-o", o]
    return CliRunner().invoke(main, cmd)


def train(*args: str):
    cmd = ["train", EXPERIMENT, "--no-progress", *args]
    for o in TINY_SMALL:
        cmd += ["-o", o]
    return CliRunner().invoke(main, cmd)


def refused(result, field: str, words: str) -> None:
    """Exit 2 and exactly one ``error: <field>: …`` line, no traceback."""
    assert result.exit_code == 2, result.output
    assert result.output.count("error:") == 1, result.output
    assert f"error: {field}: " in result.output and words in result.output, result.output
    assert "Traceback" not in result.output


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def silent_server():
    """A port that accepts TCP connections and never answers (a hung server, a firewall
    that lets the handshake through); it closes after 60 s so a client without a
    timeout fails the test instead of hanging it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    timer = threading.Timer(60, sock.close)
    timer.start()
    try:
        yield sock.getsockname()[1]
    finally:
        timer.cancel()
        sock.close()


@pytest.fixture
def empty_cwd(tmp_path, monkeypatch):
    """An empty current directory with the embedded defaults (mlflow.db, optuna.journal)."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return cwd


# -- masking ------------------------------------------------------------------------------
MASKED = [
    ("postgresql://postgres:SeCrEt123@127.0.0.1/test", "postgresql://postgres:***@127.0.0.1/test"),
    ("postgresql+psycopg://u:p%40ss@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
    ("postgresql://u:a/b@h/db", "postgresql://u:***@h/db"),
    ("postgresql:/u:pw@h/db", "postgresql:/u:***@h/db"),
    ("redis://:pw@127.0.0.1:6379/0", "redis://:***@127.0.0.1:6379/0"),
    ("http://user:tok@tracking:5000", "http://user:***@tracking:5000"),
    (
        "postgresql://h/db?sslmode=require&password=pw&x=1",
        "postgresql://h/db?sslmode=require&password=***&x=1",
    ),
    ("sqlite:///mlflow.db", "sqlite:///mlflow.db"),
    ("http://tracking:5000/api", "http://tracking:5000/api"),
    ("postgresql://postgres@127.0.0.1:5432/test", "postgresql://postgres@127.0.0.1:5432/test"),
    ("runs/optuna.journal", "runs/optuna.journal"),
]


@pytest.mark.parametrize(("url", "shown"), MASKED)
def test_urls_are_shown_without_their_password(url, shown):
    assert mask_url(url) == shown


def test_scrub_hides_a_password_as_written_and_decoded():
    url = "postgresql://u:p%40ss@h/db"
    text = "FATAL: password p@ss (p%40ss) rejected for postgresql://u:p%40ss@h/db"
    assert scrub(text, url) == "FATAL: password *** (***) rejected for postgresql://u:***@h/db"
    assert scrub("no secret here", url, None) == "no secret here"


# -- bad storages: exit 2, one message naming --storage, nothing created ------------------
def _bad_storages(tmp: Path) -> list[tuple[str, str]]:
    (tmp / "notes.txt").write_text("not a journal\n")
    (tmp / "notes.db").write_text("not a database either\n" * 100)
    closed = free_port()
    return [
        ("garbage://x", "unknown scheme 'garbage://'"),
        ("http://127.0.0.1:5000", "unknown scheme 'http://'"),
        ("sqlite:////nonexistent/x.db", "'/nonexistent' of '/nonexistent/x.db' does not exist"),
        (f"sqlite:///{tmp}", "is a directory"),
        (f"sqlite:///{tmp / 'notes.db'}", "is not a usable SQLite database"),
        (str(tmp), "is a directory"),
        (str(tmp / "notes.txt"), "is not an Optuna journal file"),
        ("nowhere/study.journal", "the folder 'nowhere' of 'nowhere/study.journal' does not"),
        (f"redis://127.0.0.1:{closed}", f"cannot connect to redis://127.0.0.1:{closed}"),
        (f"postgresql://postgres@127.0.0.1:{closed}/db", "cannot connect to postgresql://"),
        ("postgresql://127.0.0.1:notaport/db", "is not a valid URL"),
        # one slash: not a URL, and not to be taken for a journal file path
        ("postgresql:/127.0.0.1/db", "looks like a URL but is not one"),
        ("redis:/127.0.0.1:6379", "looks like a URL but is not one"),
        ("sqlite:/study.db", "looks like a URL but is not one"),
        ("postgresql:127.0.0.1/db", "looks like a URL but is not one"),
        ("mysql+pymysql:/h/db", "looks like a URL but is not one"),
    ]


def test_bad_storages_are_refused_before_anything_is_created(empty_cwd, tmp_path):
    cases = _bad_storages(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for storage, words in cases:
        refused(tune("--storage", storage), "--storage", words)
        assert list(empty_cwd.iterdir()) == [], storage  # no journal, no mlflow.db, no folder
        assert sorted(p.name for p in tmp_path.iterdir()) == before, storage


def test_a_password_never_shows_in_a_storage_error(empty_cwd):
    result = tune("--storage", f"postgresql://postgres:SeCrEt123@127.0.0.1:{free_port()}/db")
    refused(result, "--storage", "cannot connect to postgresql://postgres:***@127.0.0.1:")
    assert "SeCrEt123" not in result.output
    result = tune("--storage", "postgresql:/postgres:SeCrEt123@127.0.0.1/db")
    refused(result, "--storage", "looks like a URL")
    assert "SeCrEt123" not in result.output


def test_a_missing_database_is_refused_and_not_created(empty_cwd):
    name = unused_database_name()
    result = tune("--storage", f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}")
    refused(result, "--storage", f'database "{name}" does not exist')
    assert not database_exists(name)
    assert list(empty_cwd.iterdir()) == []


@pytest.mark.parametrize("scheme", ["postgresql", "redis"])
def test_a_server_that_never_answers_is_refused_within_seconds(scheme, empty_cwd):
    with silent_server() as port:
        start = time.perf_counter()
        result = tune("--storage", f"{scheme}://127.0.0.1:{port}/0")
        elapsed = time.perf_counter() - start
    refused(result, "--storage", f"cannot connect to {scheme}://127.0.0.1:{port}/0")
    # the connect timeout is 5 s; the rest is loading the experiment on a busy machine
    assert elapsed < 40, elapsed
    assert list(empty_cwd.iterdir()) == []


@pytest.mark.parametrize("timeout", ["-1", "0", "nan"])
def test_timeout_must_be_positive(timeout, empty_cwd):
    refused(tune("--timeout", timeout), "--timeout", "must be > 0")
    assert list(empty_cwd.iterdir()) == []


# -- artifact locations -------------------------------------------------------------------
@pytest.mark.parametrize("command", [train, tune], ids=["train", "tune"])
@pytest.mark.parametrize("where", ["proc", "below_a_file"])
def test_an_unwritable_artifact_location_is_refused_before_the_run(command, where, empty_cwd):
    if where == "proc":
        location, words = "/proc/gan-pipeline-artifacts", "cannot be written: '/proc'"
    else:
        (empty_cwd / "a_file").write_text("x")
        location, words = "a_file/artifacts", "is not a folder"
    (empty_cwd / "mlflow.yaml").write_text(f"artifact_location: {location}\n")
    before = sorted(p.name for p in empty_cwd.iterdir())
    refused(command(), "artifact_location", words)
    # no mlflow.db (so no run, RUNNING or not), no optuna.journal, no artifact folder
    assert sorted(p.name for p in empty_cwd.iterdir()) == before


def test_the_existing_experiments_artifact_location_is_the_one_checked(shared_store, empty_cwd):
    """MLflow writes where the experiment was created to write, whatever mlflow.yaml says now."""
    name = f"unwritable_{uuid.uuid4().hex[:8]}"
    client = MlflowClient(shared_store.tracking_uri)
    experiment_id = client.create_experiment(name, artifact_location="file:///proc/gp-artifacts")
    # other tests of the session may share this store's journal: it must not change
    journal = Path(shared_store.artifact_location).parent / "optuna.journal"
    journal_before = journal.read_bytes() if journal.exists() else None
    for command in (train, tune):
        result = command("--tracking-uri", shared_store.tracking_uri, "--experiment-name", name)
        refused(result, "artifact_location", f"where experiment '{name}' keeps its artifacts")
        assert client.search_runs([experiment_id], run_view_type=ViewType.ALL) == []
        assert list(empty_cwd.iterdir()) == []
        assert (journal.read_bytes() if journal.exists() else None) == journal_before


# -- working shared storages --------------------------------------------------------------
def optuna_storage(url: str):
    """Optuna's own storage for a URL (a Redis URL is a journal backend, not a string)."""
    if url.startswith("redis://"):
        return optuna.storages.JournalStorage(JournalRedisBackend(url))
    return url


@contextmanager
def _postgres_storage():
    with fresh_database("gp_storage") as name:
        yield f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"


@contextmanager
def _redis_storage():
    yield require_redis()


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
@pytest.mark.parametrize("server", [_postgres_storage, _redis_storage], ids=["postgres", "redis"])
def test_a_shared_storage_runs_a_trial(server, empty_cwd):
    study = f"gp_{uuid.uuid4().hex[:10]}"
    with server() as url:
        uri = f"sqlite:///{empty_cwd}/mlflow.db"
        result = tune("--storage", url, "--study-name", study, "--tracking-uri", uri)
        assert result.exit_code == 0, result.output
        assert f"in {url};" in result.output
        try:
            loaded = optuna.load_study(study_name=study, storage=optuna_storage(url))
            assert [t.state.name for t in loaded.trials] == ["COMPLETE"]
            client = MlflowClient(uri)
            experiment = client.get_experiment_by_name("wgan_gp_grid25")
            parent = client.get_run(loaded.user_attrs["mlflow_parent_run_id"])
            assert parent.info.experiment_id == experiment.experiment_id
            assert parent.data.tags["optuna.storage"] == url
            assert parent.info.status == "FINISHED"
        finally:
            optuna.delete_study(study_name=study, storage=optuna_storage(url))
    assert not (empty_cwd / "optuna.journal").exists()
