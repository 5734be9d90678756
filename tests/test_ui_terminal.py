"""``pipeline ui`` in the terminal: a port another program holds is refused in one line
before anything is created (no store, no browser on the other program's page), and the
server's access log stays out of the terminal unless ``--verbose``. Real processes, a real
``mlflow server``."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from tests.conftest import ROOT, killed_at_exit
from tests.test_tracking_server_loss import _env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ui(folder, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "ui", "--no-browser", *args],
        cwd=folder, env=_env(PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_port_another_program_holds_is_refused_in_one_line_creating_nothing(tmp_path):
    with socket.socket() as other:  # another program listening on the port
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        proc = ui(tmp_path, "--port", str(port))
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and out == "", out
    [line] = err.strip().splitlines()
    assert line.startswith(f"error: --port: 127.0.0.1:{port} is in use by another program: try")
    suggested = int(line.rsplit("--port ", 1)[1])
    assert suggested > port
    assert list(tmp_path.iterdir()) == []  # no store made for a server that cannot start


@pytest.mark.slow
@pytest.mark.parametrize("verbose", [False, True], ids=["quiet", "verbose"])
def test_the_access_log_shows_only_with_verbose(tmp_path, verbose):
    port = _free_port()
    proc = ui(tmp_path, "--port", str(port), *(["--verbose"] if verbose else []))
    with killed_at_exit(proc):
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        for _ in range(3):
            urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert out.splitlines()[0].startswith(f"MLflow UI on http://127.0.0.1:{port}/")
    requests_logged = (out + err).count('"GET /health HTTP/1.1" 200')
    assert requests_logged >= (4 if verbose else 0) and (verbose or requests_logged == 0)
    if not verbose:  # nothing but our line and MLflow's one security notice
        assert "INFO" not in out + err and "Warning" not in err, out + err


def test_ui_name_on_a_store_that_is_not_there_creates_nothing_and_names_the_file(tmp_path):
    proc = ui(tmp_path, "wgan_gp_grid25", "--port", str(_free_port()))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and out == "", out
    [line] = err.strip().splitlines()
    assert line.startswith(
        f"error: --tracking-uri: no MLflow store at {tmp_path.resolve()}/mlflow.db"
    )
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_name_lists_the_experiments_there(tmp_path):
    from mlflow.tracking import MlflowClient

    for name in ("ring_study", "grid_study"):
        MlflowClient(f"sqlite:///{tmp_path}/mlflow.db").create_experiment(name)
    proc = ui(tmp_path, "no_such_study", "--port", str(_free_port()))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and out == "", out
    line = err.strip().splitlines()[-1]
    assert "named 'no_such_study'" in line
    assert line.endswith("its experiments: Default, grid_study, ring_study"), line
