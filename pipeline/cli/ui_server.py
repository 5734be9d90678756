"""``pipeline ui``: which experiment to open, and the MLflow server run as a process group.

The server and its workers get a process group of their own, stopped as a whole on Ctrl-C
or SIGTERM, so no orphaned server keeps the port. The stores go to it by environment, never
on its command line: a password in the tracking URI would be in every user's ``ps``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

from pipeline.cli.ui_app import APP_NAME, OPEN_ROUTE, VIEW_KEY, VIEW_TAG
from pipeline.cli.ui_auth import (  # noqa: F401  (the tests and callers find them here too)
    ADMIN_PASSWORD_ENV,
    ADMIN_USER,
    USERS_FILE,
    auth_settings,
    auth_users_file,
)

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from pipeline.tracking.client import TrackingSettings

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


#: the UI's model-training view (MLflow 3 opens experiments in its GenAI view otherwise):
#: the experiment tag the UI reads (values: its ExperimentKind enum) and the URL parameter
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING_KIND = "custom_model_development"
WORKFLOW_QUERY = "workflowType=machine_learning"


def experiment_to_open(client: MlflowClient, name: str | None) -> str | None:
    """The id of experiment ``name`` (or of the experiment holding the study or comparison
    ``name``: its runs' ``optuna.study_name`` / ``comparison.name`` tag), or of the most
    recently active one."""
    if name:
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        ids = [e.experiment_id for e in client.search_experiments()]
        for tag in ("comparison.name", "optuna.study_name"):
            runs = client.search_runs(ids, f"tags.`{tag}` = '{name}'", max_results=1) if ids else []
            if runs:
                return runs[0].info.experiment_id
        return None
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        max_results=1,
        order_by=["attributes.start_time DESC"],
    )
    return runs[0].info.experiment_id if runs else None


#: how many experiments (the most recently updated) get the runs view each time
#: ``pipeline ui`` starts, besides the one it opens
VIEWED_EXPERIMENTS = 50
#: metrics shown first when a run has them: the toy-data metrics (VEEGAN/PacGAN protocol)
#: and the image ones; a study's objective goes before all
KEY_METRICS = ("modes", "hq_fraction", "reverse_kl", "w1", "fid", "precision", "recall")
#: run tags worth a column: what a run is in a tune or a comparison
KEY_TAGS = ("pipeline.role", "comparison.variant", "comparison.seed", "optuna.state")


def open_as_model_training(client: MlflowClient, experiment_id: str) -> str:
    """Tag the experiment as model training (unless it says what it is already), write the
    runs-table view (:func:`runs_view`) and return the runs page's path that opens both."""
    experiment = client.get_experiment(experiment_id)
    if EXPERIMENT_KIND_TAG not in experiment.tags:
        client.set_experiment_tag(experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING_KIND)
    view = runs_view(client, experiment_id)
    client.set_experiment_tag(experiment_id, VIEW_TAG, json.dumps(view))
    return f"#/experiments/{experiment_id}/runs?{WORKFLOW_QUERY}&viewStateShareKey={VIEW_KEY}"


def view_every_pipeline_experiment(client: MlflowClient, opened: str | None) -> None:
    """:func:`open_as_model_training` for the recent experiments that hold the pipeline's
    runs (a ``pipeline.role`` tag) besides ``opened``: the open page (``ui_app``) gives the
    browser their views, so that one reached from the experiments list shows its metric
    columns too, not MLflow's default ones."""
    recent = client.search_experiments(
        max_results=VIEWED_EXPERIMENTS, order_by=["last_update_time DESC"]
    )
    for experiment in recent:
        eid = experiment.experiment_id
        if eid != opened and client.search_runs([eid], "tags.`pipeline.role` != ''", max_results=1):
            open_as_model_training(client, eid)


def runs_view(client: MlflowClient, experiment_id: str) -> dict:
    """Columns at a glance: the objective, the key metrics, the role tags and each run's
    duration; sorted by the objective; the top-level runs (studies, comparisons) expanded."""
    runs = client.search_runs([experiment_id], max_results=500)
    metrics = {k for r in runs for k in r.data.metrics}
    objectives = [
        r.data.tags["optuna.objective"] for r in runs if "optuna.objective" in r.data.tags
    ]
    first = list(dict.fromkeys(objectives))
    shown = [m for m in dict.fromkeys(first + list(KEY_METRICS)) if m in metrics]
    tags = [t for t in KEY_TAGS if any(t in r.data.tags for r in runs)]
    columns = ["attributes.`Duration`"]
    columns += [f"metrics.`{m}`" for m in shown] + [f"tags.`{t}`" for t in tags]
    view: dict = {
        "selectedColumns": columns,
        "runsExpanded": {
            r.info.run_id: True for r in runs if "mlflow.parentRunId" not in r.data.tags
        },
    }
    if shown:
        view["orderByKey"] = f"metrics.`{shown[0]}`"
        view["orderByAsc"] = True
    return view


def run_ui(
    tracking: TrackingSettings,
    name: str | None,
    host: str,
    port: int,
    browser: bool,
    echo: Callable[[str], None],
    *,
    auth: bool = False,
    allowed_hosts: str | None = None,
    verbose: bool = False,
) -> int:
    """``pipeline ui``: serve ``tracking``'s store (or open its server), on experiment
    ``name``'s runs; the exit status. ``auth``: behind MLflow's basic-auth app
    (:func:`auth_settings`); ``allowed_hosts``: ``mlflow server --allowed-hosts``;
    ``verbose``: the server's own start-up lines and access log in the terminal too."""
    from pipeline.errors import PipelineError
    from pipeline.tracking.client import client_for
    from pipeline.tracking.locks import store_lock
    from pipeline.tracking.sqlite_store import prepare, sqlite_file
    from pipeline.tracking.urls import mask_url

    remote = tracking.tracking_uri.startswith(("http://", "https://"))
    users = auth_users_file(tracking) if auth and not remote else None
    if users is not None and not users.exists() and not os.environ.get(ADMIN_PASSWORD_ENV):
        raise PipelineError(
            f"--auth: the first start creates the UI's admin user {ADMIN_USER!r} in {users}: "
            f"set {ADMIN_PASSWORD_ENV} to its password (12 characters or more; MLflow ships "
            "no default)"
        )
    url = tracking.tracking_uri.rstrip("/") + "/" if remote else f"http://{host}:{port}/"
    started = None
    if not remote:
        check_port_free(host, port)  # else the browser would open on whatever holds it
        never_create_for(name, tracking.tracking_uri)
        extra, env = server_settings(users, allowed_hosts, verbose)
        if sqlite_file(tracking.tracking_uri) is not None:
            # the store made (or checked) whole under its lock first; then the server starts
            # while this process writes the runs view: its ~7 s of start-up and our ~3 s of
            # MLflow's import and queries go side by side
            with store_lock(tracking.tracking_uri, "tracking"):
                prepare(tracking.tracking_uri)
            started = start_server(tracking, host, port, extra, env)
    try:
        client = client_for(tracking)
        experiment_id = experiment_to_open(client, name or tracking.experiment_name)
        if experiment_id is not None:
            url += open_as_model_training(client, experiment_id)
            view_every_pipeline_experiment(client, experiment_id)
        elif name:
            names = sorted(e.name for e in client.search_experiments())
            raise PipelineError(
                f"no MLflow experiment, study or comparison named {name!r} in "
                f"{mask_url(tracking.tracking_uri)}; its experiments: "
                f"{', '.join(names) or 'none'}"
            )
    except BaseException:
        if started is not None:
            stop_group(started)
        raise
    if remote:  # a tracking server already serves the UI
        echo(f"MLflow UI of the tracking server: {mask_url(url)}")
        if browser:
            import webbrowser

            webbrowser.open(url)
        return 0
    if users is None and not is_loopback(host):
        print(no_auth_warning(host), file=sys.stderr, flush=True)
    login = f"; users in {users}" if users is not None else ""
    echo(f"MLflow UI on {url}  (store: {mask_url(tracking.tracking_uri)}{login}; Ctrl-C to stop)")
    # the page that keeps the UI in model training (pipeline.cli.ui_app); not in basic-auth
    browse = f"http://{host}:{port}{OPEN_ROUTE}?to={quote(url.split('/', 3)[3])}"
    if users is not None:
        browse = url
    server = started or start_server(tracking, host, port, extra, env)
    return watch(server, host, port, open_url=browse if browser else None)


def server_settings(
    users: Path | None, allowed_hosts: str | None, verbose: bool
) -> tuple[list[str], dict[str, str]]:
    """``mlflow server`` arguments and environment: our app (the UI kept in model
    training), or MLflow's basic-auth app with ``users``; the allowed hosts; the quiet
    terminal unless ``verbose``."""
    extra, env = ["--app-name", APP_NAME], {}
    if users is not None:
        extra, env = auth_settings(users)
    if allowed_hosts:
        extra += ["--allowed-hosts", allowed_hosts]
    if not verbose:
        extra += ["--uvicorn-opts", QUIET_UVICORN]
        env |= {"MLFLOW_LOGGING_LEVEL": "WARNING", "PYTHONWARNINGS": QUIET_WARNINGS}
    return extra, env


def never_create_for(name: str | None, tracking_uri: str) -> None:
    """Refuse ``pipeline ui NAME`` on a SQLite store that does not exist (run from another
    folder, say), naming the file in full, instead of creating an empty store there and
    then not finding NAME in it."""
    from pipeline.errors import ConfigError
    from pipeline.tracking.sqlite_store import sqlite_file

    store = sqlite_file(tracking_uri)
    if name and store is not None and not store.exists():
        raise ConfigError(
            "--tracking-uri",
            f"no MLflow store at {store.resolve()}, so no {name!r} to open: run pipeline ui "
            "in the folder that holds the store (or its mlflow.yaml), or give --tracking-uri",
        )


#: uvicorn's options (``mlflow server --uvicorn-opts``) without ``pipeline ui --verbose``: no
#: line per request (the UI polls: 515 lines in 14 minutes) and no start-up chatter; its
#: warnings and errors still show
QUIET_UVICORN = "--no-access-log --log-level warning"
#: and the deprecation notices of MLflow's own imports (Starlette's WSGI middleware), which
#: are MLflow's to act on, not the user's
QUIET_WARNINGS = "ignore::DeprecationWarning,ignore:starlette.middleware.wsgi is deprecated"


def check_port_free(host: str, port: int) -> None:
    """Refuse, in one line, a ``--port`` another program listens on (with the next free
    one to try): uvicorn would fail to bind among its INFO lines, while the health check
    and the browser reached the other program. Bound as uvicorn binds (``SO_REUSEADDR``),
    so a port left in TIME_WAIT by the last ``pipeline ui`` is not refused."""
    import errno
    import socket

    def taken(p: int) -> bool:
        address = host.strip("[]")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        with socket.socket(family) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((address, p))
            except OSError as exc:
                return exc.errno == errno.EADDRINUSE
        return False

    if taken(port):
        from pipeline.errors import ConfigError

        free = next((p for p in range(port + 1, min(port + 100, 65536)) if not taken(p)), None)
        hint = f": try --port {free}" if free else ""
        raise ConfigError("--port", f"{host}:{port} is in use by another program{hint}")


def is_loopback(host: str) -> bool:
    """True for a ``--host`` only this machine reaches: ``localhost`` or a loopback address
    (127.0.0.0/8, ``::1``). Any other name may resolve to an outside address: not loopback."""
    import ipaddress

    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def no_auth_warning(host: str) -> str:
    """The one line ``pipeline ui --host`` prints for a host others can reach: the UI and
    its REST API have no authentication unless ``mlflow server`` runs with
    ``--app-name basic-auth`` (MLflow's "MLflow Authentication" docs), which we do not."""
    return (
        f"warning: --host {host} serves the MLflow UI to other machines without "
        "authentication: anyone who reaches the port can read and change every run"
    )


def start_server(
    tracking: TrackingSettings,
    host: str,
    port: int,
    extra: list[str] | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen:
    """Start ``mlflow server`` on ``tracking``'s stores, in a process group of its own;
    ``extra`` arguments and ``env`` variables go to it as they are."""
    cmd = [sys.executable, "-m", "mlflow", "server", "--host", host, "--port", str(port)]
    cmd += ["--workers", str(SERVER_WORKERS), *(extra or [])]
    env = dict(os.environ, **(env or {}))
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    # MLflow 3's server also starts a job runner (GenAI evaluation jobs: seven processes
    # here); nothing of ours uses it
    env.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    # the stores go by environment (the options' envvars), not argv: a password in the
    # URI would be in every user's `ps` (/proc/PID/cmdline); a process's environment is not
    env["MLFLOW_BACKEND_STORE_URI"] = tracking.tracking_uri
    env.setdefault("MLFLOW_REGISTRY_STORE_URI", tracking.tracking_uri)  # its default, unsaid
    # artifacts are proxied (`mlflow server --serve-artifacts`, its default): experiments
    # created through the server get ``mlflow-artifacts:/`` locations stored under our
    # artifact root, so workers on other machines upload through the server and need no
    # shared disk; experiments created with a path of their own keep it
    env.pop("MLFLOW_DEFAULT_ARTIFACT_ROOT", None)
    env["MLFLOW_ARTIFACTS_DESTINATION"] = tracking.artifact_uri()
    return subprocess.Popen(cmd, env=env, start_new_session=True)


def watch(server: subprocess.Popen, host: str, port: int, *, open_url: str | None) -> int:
    """Wait for ``server`` until it ends or is stopped; ``open_url`` is opened in a browser
    once it answers. Returns its exit status, or 130 when Ctrl-C or SIGTERM stopped it (its
    whole process group)."""

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
