"""``pipeline ui --host`` on an address others reach warns, in one line, that MLflow's UI
has no authentication; a loopback host does not; ``--auth`` puts MLflow's basic-auth app in
front (a request without the password is refused, the admin's is answered) and does not
warn."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from pipeline.cli.ui_server import (
    ADMIN_PASSWORD_ENV,
    STOP_TIMEOUT_S,
    USERS_FILE,
    is_loopback,
    no_auth_warning,
)
from tests.test_cli import _free_port


def start_ui(tmp_path, *extra: str, env: dict | None = None) -> tuple[subprocess.Popen, int]:
    port = _free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "pipeline")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["ui", "--host", "0.0.0.0", "--port", str(port), "--no-browser", "--tracking-uri", uri]
    proc = subprocess.Popen(
        [exe, *args, *extra],
        cwd=tmp_path,
        env=dict(os.environ, **(env or {})),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    return proc, port


def wait_up(proc: subprocess.Popen, port: int) -> None:
    """Until the server's /health answers (unprotected, also behind --auth)."""
    deadline = time.time() + 90
    while time.time() < deadline and proc.poll() is None:
        time.sleep(1)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                return
        except OSError:
            pass
    raise AssertionError("the server never answered")


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    proc.terminate()  # `pipeline ui` then stops its process group
    return proc.communicate(timeout=STOP_TIMEOUT_S + 30)


@pytest.mark.slow
def test_a_host_others_reach_gets_one_warning_line(tmp_path):
    proc, port = start_ui(tmp_path)
    try:
        wait_up(proc, port)
    finally:
        out, err = stop(proc)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [no_auth_warning("0.0.0.0")], err
    assert "without authentication" in warnings[0] and "MLflow UI on" in out


def status_of(port: int, user: str | None = None, password: str = "") -> int:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search?max_results=5"
    )
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as refused:
        return refused.code


@pytest.mark.slow
def test_auth_refuses_a_request_without_the_password_and_does_not_warn(tmp_path):
    password = "a-long-admin-password"
    proc, port = start_ui(tmp_path, "--auth", env={ADMIN_PASSWORD_ENV: password})
    try:
        wait_up(proc, port)
        assert status_of(port) == 401  # anyone on the LAN: refused
        assert status_of(port, "admin", "wrong-password-here") == 401
        assert status_of(port, "admin", password) == 200
    finally:
        out, err = stop(proc)
    assert not [line for line in err.splitlines() if line.startswith("warning:")], err
    assert (tmp_path / USERS_FILE).exists() and f"users in {tmp_path / USERS_FILE}" in out


def test_auth_without_an_admin_password_is_one_line_before_any_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != ADMIN_PASSWORD_ENV}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipeline.cli",
            "ui",
            "--auth",
            "--no-browser",
            "--tracking-uri",
            f"sqlite:///{tmp_path}/mlflow.db",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("error: --auth: the first start creates the UI's admin user")
    assert ADMIN_PASSWORD_ENV in line and not (tmp_path / USERS_FILE).exists()


def test_which_hosts_are_loopback():
    for host in ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"]:
        assert is_loopback(host), host
    for host in ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.org", "myhost"]:
        assert not is_loopback(host), host
