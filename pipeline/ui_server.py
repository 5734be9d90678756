"""``pipeline ui``: which experiment to open, and the MLflow server run as a process group.

The server and its workers get a process group of their own, stopped as a whole on Ctrl-C
or SIGTERM, so no orphaned server keeps the port. The stores go to it by environment, never
on its command line: a password in the tracking URI would be in every user's ``ps``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pipeline.tracking import TrackingSettings

#: uvicorn workers of the server: one serves a team's UI and a study's workers (their
#: requests are small batches); MLflow's default of 4 took ~40 s to come up on a loaded
#: 2-core machine (issue 11), one a few seconds
SERVER_WORKERS = 1
#: how long ``pipeline ui`` waits for the server's ``/health`` before it gives up opening a
#: browser (the server keeps running): a cold ``mlflow server`` (its workers started, a new
#: SQLite store migrated) takes seconds, on a loaded machine tens of them
HEALTH_TIMEOUT_S = 60.0
#: how long a stopped server may take to end before it is killed: uvicorn (``mlflow
#: server``'s default) waits for open connections without a limit; 30 s is gunicorn's
#: default ``graceful_timeout``
STOP_TIMEOUT_S = 30.0


def experiment_to_open(client: MlflowClient, name: str | None) -> str | None:
    """The id of experiment ``name``, or of the most recently active one."""
    if name:
        found = client.get_experiment_by_name(name)
        return None if found is None else found.experiment_id
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.experiment_id if runs else None


def run_ui(
    tracking: TrackingSettings,
    name: str | None,
    host: str,
    port: int,
    browser: bool,
    echo: Callable[[str], None],
) -> int:
    """``pipeline ui``: serve ``tracking``'s store (or open its server), on experiment
    ``name``'s runs; the exit status."""
    from pipeline.errors import PipelineError
    from pipeline.tracking import client_for
    from pipeline.urls import mask_url

    remote = tracking.tracking_uri.startswith(("http://", "https://"))
    url = tracking.tracking_uri.rstrip("/") + "/" if remote else f"http://{host}:{port}/"
    experiment_id = experiment_to_open(client_for(tracking), name or tracking.experiment_name)
    if experiment_id is not None:
        url += f"#/experiments/{experiment_id}/runs"
    elif name:
        raise PipelineError(
            f"no MLflow experiment named {name!r} in {mask_url(tracking.tracking_uri)}"
        )
    if remote:  # a tracking server already serves the UI
        echo(f"MLflow UI of the tracking server: {mask_url(url)}")
        if browser:
            import webbrowser

            webbrowser.open(url)
        return 0
    echo(f"MLflow UI on {url}  (store: {mask_url(tracking.tracking_uri)}; Ctrl-C to stop)")
    return serve(tracking, host, port, open_url=url if browser else None)


def serve(tracking: TrackingSettings, host: str, port: int, *, open_url: str | None) -> int:
    """Run ``mlflow server`` on ``tracking``'s stores until it ends or is stopped.

    ``open_url`` is opened in a browser once the server answers. Returns the server's exit
    status, or 130 when Ctrl-C or SIGTERM stopped it (its whole process group).
    """
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port)]
    cmd += ["--workers", str(SERVER_WORKERS)]
    env = dict(os.environ)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow 3's server also starts a job runner (GenAI evaluation jobs: seven processes
    # here); nothing of ours uses it
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # the stores go by environment (the options' envvars), not argv: a password in the
    # URI would be in every user's `ps` (/proc/PID/cmdline); a process's environment is not
    env["MLFLOW_BACKEND_STORE_URI"] = tracking.tracking_uri
    # artifacts are proxied (`mlflow server --serve-artifacts`, its default): experiments
    # created through the server get ``mlflow-artifacts:/`` locations stored under our
    # artifact root, so workers on other machines upload through the server and need no
    # shared disk; experiments created with a path of their own keep it
    env.pop("MLFLOW_DEFAULT_ARTIFACT_ROOT", None)
    env["MLFLOW_ARTIFACTS_DESTINATION"] = tracking.artifact_uri()
    server = subprocess.Popen(cmd, env=env, start_new_session=True)

    def stop(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, stop)
    try:
        if open_url is not None and wait_healthy(f"http://{host}:{port}/health", server):
            import webbrowser

            webbrowser.open(open_url)
        return server.wait()
    except KeyboardInterrupt:
        stop_group(server)
        return 130


def stop_group(server: subprocess.Popen) -> None:
    """SIGTERM the server's process group; SIGKILL it if it has not ended in time."""
    try:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def wait_healthy(url: str, server: subprocess.Popen, timeout: float = HEALTH_TIMEOUT_S) -> bool:
    """True once ``url`` answers; False if the server ended or ``timeout`` s went by."""
    deadline = time.time() + timeout
    while time.time() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(0.5)
    return False
