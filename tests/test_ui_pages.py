"""The UI ``pipeline ui`` serves stays in the model-training view on every page, the
assistant panel closed: a real study served by a real ``pipeline ui``, its pages rendered by
headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it). A fresh browser that
opens a trial's page directly gets MLflow's GenAI sidebar and the assistant (what a user
clicking a trial used to get); the same page after the link ``pipeline ui`` opens shows
the model-training sidebar, the run's metrics, no assistant."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from urllib.parse import quote

import pytest
from mlflow.tracking import MlflowClient

from pipeline.cli.ui_app import OPEN_ROUTE
from tests.conftest import EXPERIMENTS, ROOT
from tests.test_tracking_server_loss import _env

CHROMIUM_FLAGS = [  # the machine's closed network: no background connections
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--window-size=1400,900", "--virtual-time-budget=20000",
]  # fmt: skip
#: what only MLflow's GenAI sidebar and the assistant panel show
GENAI_ONLY = ("Evaluation runs", "Judges")
ASSISTANT = "Ask questions about your"


def chromium() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        message = "headless Chromium is missing: apt-get install chromium (.ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def dom(url: str, profile: Path) -> str:
    """The page at ``url`` as rendered (scripts run) in the browser profile ``profile``."""
    command = [chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", url]
    return subprocess.run(command, capture_output=True, text=True, timeout=180).stdout


class Served:
    def __init__(self, base: str, fragment: str, trial_run: str, study_run: str) -> None:
        self.base, self.fragment = base, fragment
        self.trial_run, self.study_run = trial_run, study_run


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A two-trial study of ``gan_ring8.yaml`` and ``pipeline ui gan_ring8`` serving it."""
    folder = tmp_path_factory.mktemp("ui_pages")
    env = _env(PYTHONPATH=str(ROOT))
    tune = [sys.executable, "-m", "pipeline.cli", "tune", str(EXPERIMENTS / "gan_ring8.yaml")]
    tune += ["--n-trials", "2", "-o", "train.steps=20", "-o", "train.eval_every=10"]
    tune += ["-o", "train.eval_samples=200", "-o", "tune.objective={metric: w1}"]
    subprocess.run(tune, cwd=folder, env=env, capture_output=True, check=True, timeout=600)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ui = [sys.executable, "-m", "pipeline.cli", "ui", "gan_ring8", "--no-browser"]
    proc = subprocess.Popen(
        [*ui, "--port", str(port)], cwd=folder, env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        first = proc.stdout.readline()  # "MLflow UI on http://…/#/experiments/1/runs?… (…"
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None and time.monotonic() < deadline, first
            try:
                urllib.request.urlopen(f"{base}/health", timeout=2)
                break
            except OSError:
                time.sleep(0.3)
        client = MlflowClient(f"sqlite:///{folder}/mlflow.db")
        runs = client.search_runs([client.get_experiment_by_name("gan_ring8").experiment_id])
        by_role = {r.data.tags["pipeline.role"]: r.info.run_id for r in runs}
        fragment = first.split()[3].split("/", 3)[3]
        yield Served(base, fragment, by_role["trial"], by_role["study"])
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)


def test_the_open_page_sets_the_view_and_goes_only_within_the_ui(served):
    page = urllib.request.urlopen(f"{served.base}{OPEN_ROUTE}?to={quote(served.fragment)}")
    html = page.read().decode()
    assert 'localStorage.setItem("mlflow.workflowType_v1", "\\"machine_learning\\"")' in html
    assert 'localStorage.setItem("mlflow.assistant.panelOpen_v1", "false")' in html
    assert f'location.replace("/{served.fragment}")' in html
    elsewhere = urllib.request.urlopen(f"{served.base}{OPEN_ROUTE}?to=https://evil.example/")
    assert 'location.replace("/#/")' in elsewhere.read().decode()


@pytest.mark.slow
def test_every_page_stays_in_model_training_without_the_assistant(served, tmp_path):
    experiment = served.fragment.split("/")[2]
    trial_page = f"{served.base}/#/experiments/{experiment}/runs/{served.trial_run}"

    # a fresh browser on a trial's page: MLflow's GenAI sidebar and the assistant
    before = dom(trial_page, tmp_path / "fresh")
    assert all(word in before for word in GENAI_ONLY) and ASSISTANT in before

    # the link pipeline ui opens: the runs table with the metric columns, best first
    profile = tmp_path / "opened"
    landing = dom(f"{served.base}{OPEN_ROUTE}?to={quote(served.fragment)}", profile)
    assert "hq_fraction" in landing and "reverse_kl" in landing and "(best)" in landing
    assert not any(word in landing for word in GENAI_ONLY) and ASSISTANT not in landing

    # then a trial's page and the study's, opened as a click opens them (no parameter)
    for run_id in (served.trial_run, served.study_run):
        page = dom(f"{served.base}/#/experiments/{experiment}/runs/{run_id}", profile)
        assert "Model training" in page and "Metrics (" in page, run_id
        assert not any(word in page for word in GENAI_ONLY) and ASSISTANT not in page, run_id
