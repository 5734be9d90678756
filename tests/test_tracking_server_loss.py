"""A tracking server that goes away: bounded retries, one error line, nothing lost.

Real processes: a real ``mlflow server`` (SQLite backend) in its own process group, killed
with SIGKILL while ``pipeline train`` logs to it, then restarted on the same store.
"""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli.commands import main
from pipeline.errors import ConfigError
from pipeline.tracking.client import RunTracker, TrackingSettings, client_for
from pipeline.tracking.http import HTTP_KEYS, TrackingUnavailable, unreachable_reason
from pipeline.training.checkpoint import load_checkpoint
from tests.conftest import EXPERIMENTS, ROOT

HTTP_VARS = [name for name, _, _ in HTTP_KEYS.values()]
#: the train process must be gone this soon after the server died: one request's retries
#: (0 + 2 + 4 + 8 s + jitter with the defaults), the next flush, writing the folder, and
#: slack for this shared 2-core machine
EXIT_BOUND_S = 60


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict[str, str]:
    """The children's environment: no inherited MLflow settings, one thread for torch."""
    env = {k: v for k, v in os.environ.items() if k not in HTTP_VARS}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(MLFLOW_DISABLE_TELEMETRY="true", OMP_NUM_THREADS="1", **extra)
    return env


class Server:
    """``mlflow server`` on a SQLite store, in a process group of its own."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.proc: subprocess.Popen | None = None
        self.uri = ""
        self.startup_s = 0.0

    def start(self) -> Server:
        port = _free_port()
        self.uri = f"http://127.0.0.1:{port}"
        cmd = [sys.executable, "-m", "mlflow", "server"]
        cmd += ["--backend-store-uri", f"sqlite:///{self.root}/srv.db"]
        cmd += ["--default-artifact-root", str(self.root / "art")]
        cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
        log = open(self.root / "server.log", "ab")
        began = time.monotonic()
        self.proc = subprocess.Popen(
            cmd, env=_env(), stdout=log, stderr=log, start_new_session=True
        )
        deadline = began + 180
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(self.uri + "/health", timeout=2):
                    self.startup_s = time.monotonic() - began
                    return self
            except OSError:
                time.sleep(0.25)
        raise AssertionError("mlflow server did not answer /health within 180 s")

    def kill(self) -> None:
        """SIGKILL the whole group (uvicorn and the job runner too): a crash, no goodbye."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self.proc = None


@pytest.fixture
def server_root(tmp_path):
    root = tmp_path / "server"
    root.mkdir()
    servers: list[Server] = []

    def make() -> Server:
        servers.append(Server(root).start())
        return servers[-1]

    yield make
    for s in servers:
        s.kill()


#: overrides of a tiny ``gan_ring8.yaml`` training that never ends by itself (a test stops
#: it), logging every 25 steps and evaluating every 300
ENDLESS = ("train.steps=10000000", "train.log_every=25", "train.eval_every=300")
ENDLESS += ("train.eval_samples=500", "model.g_width=32", "model.d_width=32")


def start_endless(command: str, work: Path, *args: str) -> subprocess.Popen:
    """``pipeline COMMAND gan_ring8.yaml ARGS`` on the :data:`ENDLESS` training, run in
    ``work`` as a real process, its output piped as text."""
    cmd = [sys.executable, "-m", "pipeline.cli", command, str(EXPERIMENTS / "gan_ring8.yaml")]
    cmd += [*args, *(a for o in ENDLESS for a in ("-o", o))]
    return subprocess.Popen(
        cmd, cwd=work, env=_env(PYTHONPATH=str(ROOT)), stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_training(uri: str, proc: subprocess.Popen, timeout: float = 240) -> None:
    """Until a run in ``uri``'s store has per-step metrics (training is going); fails if
    ``proc`` ended first."""
    from mlflow.tracking import MlflowClient

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            client = MlflowClient(uri)
            runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
        except Exception:  # a SQLite store still being made
            runs = []
        if any("loss/critic" in r.data.metrics for r in runs):
            return
        time.sleep(0.5)
    raise AssertionError("no run logged metrics")


def _wait_for_logged_run(uri: str, proc: subprocess.Popen, timeout: float = 240) -> str:
    """The id of the run once it has per-step metrics on the server (training is going)."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()
        experiments = [e.experiment_id for e in client.search_experiments()]
        runs = client.search_runs(experiments) if experiments else []
        if runs and "loss/critic" in runs[0].data.metrics:
            return runs[0].info.run_id
        time.sleep(0.5)
    raise AssertionError("no run with metrics appeared")


@pytest.mark.slow
def test_server_killed_mid_training_keeps_everything_locally(server_root, tmp_path):
    server = server_root()
    work = tmp_path / "work"
    work.mkdir()
    proc = start_endless("train", work, "--no-progress", "--tracking-uri", server.uri)
    try:
        run_id = _wait_for_logged_run(server.uri, proc)
        server.kill()
        killed = time.monotonic()
        out, err = proc.communicate(timeout=EXIT_BOUND_S + 60)
        exit_s = time.monotonic() - killed
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"server start-up {server.startup_s:.1f} s; train exit {exit_s:.1f} s after the kill")
    assert proc.returncode == 1, (out, err)
    assert exit_s < EXIT_BOUND_S
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, nothing else
    line = lines[0]
    assert line.startswith("error: tracking: ") and "unreachable" in line, line
    assert f"run {run_id} left RUNNING" in line
    folder = Path(re.search(r"kept in (\S+)/ \(pipeline sync", line).group(1))
    assert folder == work / "gan-pipeline-unsent" / run_id

    # the checkpoint loads, and it is where training stopped
    state = load_checkpoint(folder / "checkpoint.pt")
    step = state["step"]
    assert 0 < step < 10000000
    assert f"stopped at step {step} of 10000000" in line
    assert {"generator", "critic", "optimizer_generator", "rng"} <= set(state)
    assert (folder / "config.yaml").is_file() and (folder / "samples.npy").is_file()
    with open(folder / "unsent_metrics.csv") as f:
        rows = list(csv.DictReader(f))
    assert rows and set(rows[0]) == {"key", "value", "step"}
    unsent_steps = {int(r["step"]) for r in rows if r["key"] == "loss/critic"}
    assert max(unsent_steps) == step  # the rows of the very last flush are kept too
    record = json.loads((folder / "run.json").read_text())
    assert record["run_id"] == run_id and record["step"] == step
    assert record["status_on_server"].startswith("RUNNING")
    assert record["tracking_uri"] == server.uri

    # one bounded try to mark it FAILED while the server is down: refused at once
    from mlflow.tracking import MlflowClient

    began = time.monotonic()
    assert not RunTracker(MlflowClient(server.uri), run_id, server.uri).mark_failed("test")
    assert time.monotonic() - began < 5

    # the server comes back on the same store: the run is there, RUNNING (nobody could
    # end it), and per-step metrics on the server plus the CSV cover every step: none lost
    server = server_root()
    client = MlflowClient(server.uri)
    assert client.get_run(run_id).info.status == "RUNNING"
    on_server = {m.step for m in client.get_metric_history(run_id, "loss/critic")}
    assert on_server | unsent_steps == set(range(1, step + 1))
    # the message's resume command works against it (a few more steps)
    resume = line.split("resume with: ")[1].split()
    assert resume[:2] == ["pipeline", "train"]
    again = [*resume[1:], "--no-progress", "-o", f"train.steps={step + 5}"]
    more = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *again, "--tracking-uri", server.uri],
        cwd=work, env=_env(PYTHONPATH=str(ROOT)), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert more.returncode == 0, more.stderr
    assert f"finished {step + 5} steps" in more.stdout
    # and once the server is back, the bounded call does end the lost run FAILED
    assert RunTracker(client, run_id, server.uri).mark_failed("server was killed")
    run = client.get_run(run_id)
    assert run.info.status == "FAILED" and run.data.tags["failure_reason"] == "server was killed"


def _mlflow_yaml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mlflow.yaml"
    path.write_text(text)
    return path


def test_retry_settings_from_mlflow_yaml_bound_a_closed_port(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the last client opens the default ./mlflow.db: here
    for name in HTTP_VARS:
        monkeypatch.delenv(name, raising=False)
    path = _mlflow_yaml(tmp_path, "http_retries: 1\nhttp_backoff_factor: 0\nhttp_timeout_s: 3\n")
    uri = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    settings = TrackingSettings.load(path, tracking_uri=uri)
    client_for(settings)
    assert [os.environ[n] for n in HTTP_VARS] == ["1", "0", "3"]
    began = time.monotonic()
    with pytest.raises(TrackingUnavailable) as caught:
        RunTracker.start(settings, "never-created")
    assert time.monotonic() - began < 3  # MLflow's defaults: 0+4+8+16+32+64+120 s of backoff
    assert "unreachable" in str(caught.value) and "after 1 retries" in str(caught.value)
    assert "Connection refused" in str(caught.value)
    # the user's own variable wins over mlflow.yaml
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    client_for(TrackingSettings.load(_mlflow_yaml(tmp_path, "http_retries: 5\n")))
    assert os.environ["MLFLOW_HTTP_REQUEST_MAX_RETRIES"] == "0"
    assert os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "15"  # the default, not the user's


def test_train_against_no_server_is_one_line_and_creates_nothing(tmp_path, monkeypatch):
    for name in HTTP_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    _mlflow_yaml(tmp_path, "http_retries: 0\n")
    uri = f"http://127.0.0.1:{_free_port()}"
    result = CliRunner().invoke(
        main, ["train", str(EXPERIMENTS / "gan_ring8.yaml"), "--tracking-uri", uri]
    )
    assert result.exit_code == 1, result.output
    assert result.output.startswith(f"error: tracking: MLflow server {uri} unreachable")
    assert result.output.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mlflow.yaml"]


BAD_YAML = [
    ("http_retries: 11", "http_retries: must be a whole number from 0 to 10, got 11"),
    ("http_retries: -1", "http_retries"),
    ("http_retries: '3'", "http_retries: must be a whole number"),
    ("http_retries: true", "http_retries"),
    ("http_backoff_factor: 0.5", "http_backoff_factor: must be a whole number from 0 to 120"),
    ("http_timeout_s: 0", "http_timeout_s: must be a whole number >= 1, got 0"),
    ("unsent_dir: ''", "unsent_dir: must be a folder"),
]


@pytest.mark.parametrize(("text", "words"), BAD_YAML)
def test_bad_retry_settings_are_refused(text, words, tmp_path):
    with pytest.raises(ConfigError) as caught:
        TrackingSettings.load(_mlflow_yaml(tmp_path, text + "\n"))
    assert words in str(caught.value)
    assert caught.value.field.startswith("mlflow.yaml:")


def test_mark_failed_on_a_reachable_store_and_other_errors_stay_themselves(shared_store):
    from mlflow.exceptions import MlflowException

    tracker = RunTracker.start(shared_store, "server-loss-unit")
    assert tracker.mark_failed("tracking server unreachable at step 3: test")
    run = tracker.client.get_run(tracker.run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"] == "tracking server unreachable at step 3: test"
    # a store that answers "no such run" is reachable: not turned into TrackingUnavailable
    with pytest.raises(MlflowException) as caught:
        tracker.client.get_run("0" * 32)
    assert unreachable_reason(caught.value) is None
