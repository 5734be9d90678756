"""One ``pipeline compare`` per comparison and store: a second process is refused at once,
and the budget is not exceeded. Real processes, a real journal and MLflow SQLite store;
the store locks on the machine's PostgreSQL and Redis."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import optuna
import pytest

from pipeline.tracking.locks import LockBusy, store_lock
from tests.servers import PG_HOST, PG_PORT, fresh_database, fresh_redis_db
from tests.test_compare import comparison_file


def compare_command(path, folder) -> list[str]:
    uri = f"sqlite:///{folder}/mlflow.db"
    return [sys.executable, "-m", "pipeline.cli", "compare", str(path), "--tracking-uri", uri]


@pytest.mark.slow
def test_a_second_compare_of_the_same_comparison_is_refused_and_the_budget_holds(tmp_path):
    path = comparison_file(tmp_path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    first = subprocess.Popen(
        compare_command(path, tmp_path),
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        seen = ""
        deadline = time.monotonic() + 120
        while "== gan: tuning" not in seen:  # printed with the lock held
            assert time.monotonic() < deadline and first.poll() is None, seen
            seen += first.stdout.readline()
        second = subprocess.run(
            compare_command(path, tmp_path),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        rest, _ = first.communicate(timeout=600)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert second.returncode == 1, second.stdout + second.stderr
    lines = second.stderr.strip().splitlines()
    assert lines == [
        "error: comparison 'tiny' is running in another process on this store; wait for it "
        "to end (a comparison resumes where it stopped), or start it with --workers N to run "
        "it in several processes"
    ]
    assert second.stdout == ""
    assert first.returncode == 0, seen + rest
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    )
    for variant in ("gan", "sngan"):  # the budget: 2 trials each, not 4
        study = optuna.load_study(study_name=f"tiny-{variant}", storage=storage)
        assert len(study.trials) == 2

    # once the first has ended, the same command goes on (and only reports: budget spent)
    again = subprocess.run(
        compare_command(path, tmp_path), cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert again.returncode == 0, again.stderr
    assert "gan: tuning budget spent (2 trials" in again.stdout


def test_a_file_store_lock_taken_without_waiting_is_refused_while_held(tmp_path):
    journal = str(tmp_path / "optuna.journal")
    probe = (
        "import sys; from pipeline.tracking.locks import store_lock, LockBusy\n"
        "try:\n"
        f"    with store_lock({journal!r}, 'comparison-x', wait=False): print('got')\n"
        "except LockBusy: print('busy')\n"
    )
    with store_lock(journal, "comparison-x", wait=False):  # the kernel's lock: another process
        held = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    free = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert (held.stdout, free.stdout) == ("busy\n", "got\n"), held.stderr + free.stderr
    with store_lock(journal, "comparison-y", wait=False):  # another purpose: another lock
        other = subprocess.run([sys.executable, "-c", probe], capture_output=True)
    assert other.stdout == b"got\n"


def test_postgres_and_redis_store_locks_taken_without_waiting_are_refused_while_held():
    with fresh_database() as name:
        url = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/{name}"
        with store_lock(url, "comparison-x", wait=False):  # a session advisory lock
            with pytest.raises(LockBusy):  # another connection
                with store_lock(url, "comparison-x", wait=False):
                    pass
            with store_lock(url, "comparison-y", wait=False):
                pass
        with store_lock(url, "comparison-x", wait=False):  # released with the first
            pass
    with fresh_redis_db() as url:
        with store_lock(url, "comparison-x", wait=False):
            with pytest.raises(LockBusy):
                with store_lock(url, "comparison-x", wait=False):
                    pass
        with store_lock(url, "comparison-x", wait=False):
            pass
