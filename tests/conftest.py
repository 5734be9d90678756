"""Shared fixtures: the real registry, real MLflow stores in temp dirs, experiment paths."""

from __future__ import annotations

import importlib.metadata
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
# tune, compare and retrain default to one worker process per core (pipeline/training/cores.py);
# the suite's commands run in one process unless a test asks for workers, and
# test_cores.py runs the default itself
os.environ.setdefault("PIPELINE_WORKERS", "1")

# A suite started from a non-interactive shell's background job inherits SIGINT ignored, and
# so would every process it starts (an ignored signal stays ignored across exec): the tests
# that Ctrl-C a real process (a train, a store being created, pipeline ui) need it heard
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

#: plugin packages kept as fixtures run their own tests, in their own process
#: (test_plugin_contract_fixture.py), not as part of this suite
collect_ignore = ["fixtures"]


@pytest.fixture(scope="session", autouse=True)
def classifier_cache(tmp_path_factory) -> Iterator[Path]:
    """Feature classifiers of the image metrics are cached in one temp dir for the whole
    session (so the image test modules train the digits classifier once), never in
    ~/.cache; the folder it yields is ``$GAN_PIPELINE_CLASSIFIER_CACHE``."""
    path = tmp_path_factory.mktemp("classifier-cache")
    previous = os.environ.get("GAN_PIPELINE_CLASSIFIER_CACHE")
    os.environ["GAN_PIPELINE_CLASSIFIER_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("GAN_PIPELINE_CLASSIFIER_CACHE", None)
    else:
        os.environ["GAN_PIPELINE_CLASSIFIER_CACHE"] = previous


ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "experiments"
#: the installed gan-pipeline, as errors and MLflow tags name it ("gan-pipeline 0.1.0")
GAN_PIPELINE = f"gan-pipeline {importlib.metadata.version('gan-pipeline')}"
#: the metrics an image dataset with labels gets by default, besides ``w1``
IMAGE_METRICS = frozenset(
    {"classifier_fd", "class_coverage", "class_kl", "precision", "recall", "classifier_accuracy"}
)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One torch thread for a module's tests (``pytest.mark.usefixtures("one_thread")``): on
    the 2-core test machine, shared with other work, two threads made small conv nets
    several times slower than one (measured)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def registry():
    from pipeline.host.registry import default_registry

    return default_registry()


@pytest.fixture(scope="session")
def shared_store(tmp_path_factory):
    """One real MLflow SQLite store for the whole session (creating one costs seconds)."""
    from pipeline.tracking.client import TrackingSettings

    root = tmp_path_factory.mktemp("mlflow")
    return TrackingSettings(
        tracking_uri=f"sqlite:///{root}/mlflow.db", artifact_location=str(root / "artifacts")
    )


def tiny(path: str | Path, *extra: str) -> list[str]:
    """Overrides that make any experiment train for a few steps."""
    return [
        "train.steps=6",
        "train.eval_every=3",
        "train.log_every=2",
        "train.eval_samples=500",
        *extra,
    ]


#: 16-wide MLPs on batches of 32
SMALL = ("model.g_width=16", "model.d_width=16", "train.batch_size=32")
#: the objective the tuning tests rank by: sliced W1, which differs between trials after
#: four steps, where the shipped ``reverse_kl - hq_fraction`` is the same for every trial
#: (no sample near a mode yet: ln M - 0) and would tie them all
W1_OBJECTIVE = "tune.objective={metric: w1, direction: minimize}"
#: four steps of them, evaluated on 200 samples: the tuning, storage and secrets tests
TINY_SMALL = [
    "train.steps=4",
    "train.eval_every=2",
    "train.log_every=2",
    "train.eval_samples=200",
    *SMALL,
    W1_OBJECTIVE,
]


def train_args(file: str, store, *extra: str) -> list[str]:
    """``pipeline train`` arguments: the experiment ``file`` on :func:`tiny` budgets (plus
    ``extra`` overrides), tracked in ``store`` (a ``TrackingSettings``)."""
    args = ["train", str(EXPERIMENTS / file), "--no-progress", "--tracking-uri", store.tracking_uri]
    for o in tiny(file, *extra):
        args += ["-o", o]
    return args


@contextmanager
def killed_at_exit(proc) -> Iterator:
    """``proc`` (a ``subprocess.Popen``), killed and reaped on the way out if it still runs,
    whatever the test asserted meanwhile."""
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def interrupt_once_trials_start(proc, study_name: str, storage, count: int = 2) -> str:
    """Wait (3 minutes at most) until ``count`` trials of the study have started their
    MLflow run, Ctrl-C ``proc`` (SIGINT), and return its output once it has exited."""
    import signal
    import time

    import optuna

    with killed_at_exit(proc):
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                trials = optuna.load_study(study_name=study_name, storage=storage).trials
            except (KeyError, FileNotFoundError):
                trials = []
            if len([t for t in trials if "mlflow_run_id" in t.user_attrs]) == count:
                break
            time.sleep(0.2)
        else:
            pytest.fail(f"{count} trials did not start in 180 s")
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    return out


def pip_install_target(package: Path, root: Path) -> Path:
    """Install the plugin package in ``package`` for real into ``root/site`` and return it.

    ``pip install --target`` (no index, no dependencies: gan-pipeline is already here) from
    a copy in ``root/source``, so the package's own folder gets no build files; its
    dist-info and entry points are real. Put the site folder on ``sys.path`` (or
    ``PYTHONPATH``) for as long as a test needs the package.
    """
    import shutil
    import subprocess
    import sys

    source = root / "source"
    shutil.copytree(
        package,
        source,
        ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", ".pytest_cache"),
    )
    site = root / "site"
    subprocess.run(
        [
            *(sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index"),
            *("--no-build-isolation", "--target", str(site), str(source)),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    return site
