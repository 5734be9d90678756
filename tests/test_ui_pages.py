"""The UI ``pipeline ui`` serves stays in the model-training view on every page, the
assistant panel closed: a real study served by a real ``pipeline ui``, its pages rendered by
headless Chromium (Debian's ``chromium``; ``.ci/run`` installs it). A fresh browser that
opens a trial's page directly gets MLflow's GenAI sidebar and the assistant (what a user
clicking a trial used to get); the same page after the link ``pipeline ui`` opens shows
the model-training sidebar, the run's metrics, no assistant. A user's path is then clicked
through with the mouse (tests/browser.py, the DevTools protocol): the best trial, its
artifacts and a figure, its study, the experiments list, a comparison and its report."""

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
from tests.browser import Browser
from tests.conftest import EXPERIMENTS, ROOT
from tests.test_compare import comparison_file
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
    # a comparison in the same store: one trial and one seed for each of two variants
    spec = comparison_file(folder, name="tiny_ui", budget={"trials": 1}, seeds=1)
    compare = [sys.executable, "-m", "pipeline.cli", "compare", str(spec)]
    subprocess.run(compare, cwd=folder, env=env, capture_output=True, check=True, timeout=600)
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
    # and each experiment's runs view, where the browser saved none, under the UI's own key
    assert '"mlflow.sharedViewState.gan-pipeline"' in html
    assert '"MLflowLocalStorage-1.1-ExperimentPage-"+JSON.stringify([e.experiment_id])' in html
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


@pytest.mark.slow
def test_clicking_through_trials_studies_and_a_comparison_keeps_the_view(served, tmp_path):
    """What a user does, with the mouse: the link pipeline ui opens, the best trial, its
    artifacts and a figure, its study, then the list of experiments and a comparison."""

    def model_training(page: str, where: str) -> None:
        assert "Model training" in page, where
        assert not any(w in page for w in GENAI_ONLY) and ASSISTANT not in page, where

    with Browser(chromium(), tmp_path / "clicks") as browser:
        browser.open(f"{served.base}{OPEN_ROUTE}?to={quote(served.fragment)}")
        model_training(browser.wait_for("(best)", "hq_fraction", "reverse_kl"), "landing")

        browser.click("a", "(best)")  # the best trial's name in the runs table
        model_training(browser.wait_for("Metrics (", "hq_fraction"), "trial")
        assert f"/runs/{served.trial_run}" in browser.url() or "/runs/" in browser.url()
        browser.click('[role="tab"], button, a', "Artifacts")
        model_training(browser.wait_for("loss_curves.png", "checkpoint"), "trial artifacts")
        browser.click("*", "loss_curves.png")
        browser.wait_for("Path:")
        shown = "[...document.images].filter(i => i.src.startsWith('blob:') && i.naturalWidth)"
        deadline = time.monotonic() + 60
        while not browser.evaluate(f"{shown}.length") and time.monotonic() < deadline:
            time.sleep(0.3)
        assert browser.evaluate(f"{shown}.length"), "the figure is not drawn"

        browser.click('[role="tab"], button, a', "Overview")
        browser.click("a", "study gan_ring8")  # the trial's parent run
        model_training(browser.wait_for("Metrics (", "best_value"), "study")
        assert f"/runs/{served.study_run}" in browser.url()

        # the sidebar's way back to the experiments, then a comparison's experiment
        browser.click("a, button, [role=button]", "gan_ring8")
        browser.wait_for("Time created", "tiny_ui")
        browser.click("a", "tiny_ui")
        # reached from the list, not the link: still the metric and role columns (the
        # view the open page saved for it), not MLflow's Dataset / Source / Models
        listed = browser.wait_for("comparison tiny_ui", "hq_fraction", "comparison.variant")
        model_training(listed, "comparison runs")
        headers = browser.evaluate(
            "[...document.querySelectorAll('[role=columnheader]')].map(h => h.innerText)"
        )
        assert any("hq_fraction" in h for h in headers), headers
        assert "Source" not in headers and "Models" not in headers, headers
        browser.click("a", "comparison tiny_ui")
        model_training(browser.wait_for("Parameters ("), "comparison run")
        browser.click('[role="tab"], button, a', "Artifacts")
        model_training(browser.wait_for("report", "comparison"), "comparison artifacts")
