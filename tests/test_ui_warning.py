"""``pipeline ui --host`` on an address others reach warns, in one line, that MLflow's UI
has no authentication; a loopback host does not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request

import pytest

from pipeline.cli.ui_server import STOP_TIMEOUT_S, is_loopback, no_auth_warning
from tests.test_cli import _free_port


@pytest.mark.slow
def test_a_host_others_reach_gets_one_warning_line(tmp_path):
    port = _free_port()
    exe = os.path.join(os.path.dirname(sys.executable), "pipeline")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    args = ["ui", "--host", "0.0.0.0", "--port", str(port), "--no-browser", "--tracking-uri", uri]
    proc = subprocess.Popen(
        [exe, *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # stopped only once the server answers: `pipeline ui` then stops its process group
        deadline = time.time() + 90
        up = False
        while time.time() < deadline and not up and proc.poll() is None:
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5):
                    up = True
            except OSError:
                pass
        assert up, "the server never answered"
    finally:
        proc.terminate()
        out, err = proc.communicate(timeout=STOP_TIMEOUT_S + 30)
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert warnings == [no_auth_warning("0.0.0.0")], err
    assert "without authentication" in warnings[0] and "MLflow UI on" in out


def test_which_hosts_are_loopback():
    for host in ["127.0.0.1", "127.1.2.3", "localhost", "LOCALHOST", "::1", "[::1]"]:
        assert is_loopback(host), host
    for host in ["0.0.0.0", "::", "192.168.1.5", "10.0.0.1", "example.org", "myhost"]:
        assert not is_loopback(host), host
