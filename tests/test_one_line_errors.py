"""A failure nobody foresaw ends with one ``error:`` line naming what failed and what to do,
not a traceback; ``--debug`` / ``PIPELINE_DEBUG=1`` brings the traceback back, and the run is
ended FAILED with its true reason. Real processes: the machine really refuses the memory
(an allocation larger than the whole RAM) and the disk (a small tmpfs, mounted as root)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest

from pipeline.errors import one_line, resource_failure
from tests.conftest import EXPERIMENTS, TINY_SMALL


def pipeline(cwd: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env=dict(os.environ, OMP_NUM_THREADS="1", **(env or {})),
        capture_output=True,
        text=True,
        timeout=300,
    )


def train_ring8(cwd: Path, *overrides: str, debug: bool = False) -> subprocess.CompletedProcess:
    args = ["train", str(EXPERIMENTS / "gan_ring8.yaml"), "--no-progress"]
    for item in ("train.eval_every=100", *overrides):
        args += ["-o", item]
    return pipeline(cwd, *(["--debug"] if debug else []), *args)


def statuses(cwd: Path) -> list[tuple[str, str | None]]:
    """Each run's status and failure reason, read with a connection closed at once (the
    store may be on a tmpfs this test unmounts)."""
    query = (
        "SELECT status, (SELECT value FROM tags WHERE tags.run_uuid = runs.run_uuid "
        "AND key = 'failure_reason') FROM runs"
    )
    with closing(sqlite3.connect(cwd / "mlflow.db")) as db:
        return [tuple(row) for row in db.execute(query)]


def last_line(stderr: str) -> str:
    return stderr.strip().splitlines()[-1]


def total_ram_bytes() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


@pytest.mark.slow
def test_out_of_memory_in_training_is_one_line_and_the_run_failed(tmp_path):
    if Path("/proc/sys/vm/overcommit_memory").read_text().strip() == "1":
        pytest.skip("vm.overcommit_memory=1 grants any allocation: the kernel would kill us")
    # the generator's first layer (400 wide) on this batch needs twice the machine's RAM
    batch = 2 * total_ram_bytes() // (400 * 4)
    done = train_ring8(tmp_path, f"train.batch_size={batch}", "train.steps=2")
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    line = last_line(done.stderr)
    assert line.startswith("error: out of memory (") and "lower train.batch_size" in line
    assert [s for s, _ in statuses(tmp_path)] == ["FAILED"]


def tmpfs(path: Path, size: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs (a full disk for real) needs root")
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)


@pytest.mark.slow
def test_a_full_disk_is_one_line_the_run_failed_and_debug_shows_the_traceback(tmp_path):
    disk = tmp_path / "disk"
    tmpfs(disk, "3m")  # the store fits; the run's artifacts (a 1 MB generator…) do not
    try:
        done = train_ring8(disk, "train.steps=200")
        assert done.returncode == 1, done.stderr
        assert "Traceback" not in done.stderr
        assert last_line(done.stderr).startswith("error: no space left on the disk")
        assert statuses(disk) == [("FAILED", "OSError: [Errno 28] No space left on device")]

        debug = train_ring8(disk, "train.steps=200", debug=True)
        assert debug.returncode == 1
        assert "Traceback" in debug.stderr
        assert last_line(debug.stderr).startswith("OSError: [Errno 28] No space left")
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_one_line_names_the_cause_inside_a_wrapped_error():
    try:
        try:
            raise OSError(28, "No space left on device", "/data/mlflow.db")
        except OSError as inner:
            raise RuntimeError("could not log the metrics\nsecond line") from inner
    except RuntimeError as outer:
        wrapped = outer
    assert resource_failure(wrapped).startswith("no space left on the disk writing /data/mlflow")
    assert one_line(ValueError("first\nsecond")) == "ValueError: first"
    assert one_line(KeyError()) == "KeyError"
    assert len(one_line(ValueError("x" * 1000))) < 320
    assert resource_failure(ValueError("fine")) is None


@pytest.mark.slow
def test_a_study_whose_mlflow_store_was_deleted_is_refused_in_one_line(tmp_path):
    args = ["tune", str(EXPERIMENTS / "gan_ring8.yaml"), "--n-trials", "1"]
    for item in TINY_SMALL:
        args += ["-o", item]
    assert pipeline(tmp_path, *args).returncode == 0
    (tmp_path / "mlflow.db").unlink()  # the Optuna journal is kept
    again = pipeline(tmp_path, *args)
    assert again.returncode == 2 and "Traceback" not in again.stderr
    line = last_line(again.stderr)
    assert line.startswith("error: --tracking-uri: study 'gan_ring8' in optuna.journal logs to")
    assert "which is not in sqlite:///mlflow.db" in line and "--study-name" in line
