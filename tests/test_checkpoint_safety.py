"""Checkpoints that survive (periodic, on SIGTERM/Ctrl-C) and load safely (weights_only).

Real signals to real processes, a real MLflow SQLite store, real torch training on tiny
budgets. Float comparisons are exact: a resumed run on CPU repeats the same computation
in the same order (one thread, one machine) as the uninterrupted one.
"""

from __future__ import annotations

import os
import pickle
import random
import signal
import subprocess
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from pipeline.cli.commands import main
from pipeline.experiment.config import load_experiment
from pipeline.tracking.client import RunTracker, TrackingSettings
from pipeline.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from pipeline.training.interrupt import StopRequest, TrainingInterrupted, stop_on_signals
from pipeline.training.run import run_training
from pipeline.training.trainer import Trainer
from tests.conftest import EXPERIMENTS, tiny

SMALL = ("model.g_width=16", "model.d_width=16", "train.batch_size=32")


def experiment(registry, *extra: str, file: str = "sngan_ring8.yaml"):
    return load_experiment(EXPERIMENTS / file, tiny(file, *SMALL, *extra), registry=registry)


def tensors_equal(a, b) -> bool:
    """Exact equality of nested state dicts (tensors bit for bit)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(tensors_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(tensors_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def artifact_checkpoint(client: MlflowClient, run_id: str, dst: Path) -> dict:
    dst.mkdir(parents=True, exist_ok=True)
    return load_checkpoint(client.download_artifacts(run_id, "checkpoint/checkpoint.pt", str(dst)))


def history(client: MlflowClient, run_id: str, key: str) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in client.get_metric_history(run_id, key))


@pytest.fixture
def sigterm_guard():
    """A SIGTERM that reaches the test process outside a training raises instead of
    killing pytest; the handler in force before the test comes back after it."""

    def outside(signum, frame):
        raise RuntimeError("SIGTERM arrived while no training handled it")

    previous = signal.signal(signal.SIGTERM, outside)
    yield
    signal.signal(signal.SIGTERM, previous)


# -- the state on disk -------------------------------------------------------------------


def test_a_saved_checkpoint_loads_with_weights_only_and_resumes_identically(registry, tmp_path):
    exp = experiment(registry, "train.steps=6")
    full = Trainer(exp, workdir=tmp_path, progress=False)
    losses_full = [full.train_step(False)[0][0].item() for _ in range(6)]

    first = Trainer(exp, workdir=tmp_path, progress=False)
    losses_first = [first.train_step(False)[0][0].item() for _ in range(3)]
    saved_numpy, saved_python = np.random.get_state(), random.getstate()
    path = first.save_checkpoint(tmp_path / "ck.pt")
    # every RNG moves before the resume: the checkpoint must put each one back
    torch.randn(100), np.random.rand(100), random.random()
    state = torch.load(path, weights_only=True)  # plain data: no pickled objects
    assert state["format"] == 2 and state["step"] == 3
    second = Trainer(exp, workdir=tmp_path, progress=False)
    second.restore(load_checkpoint(path))
    assert np.random.get_state()[1].tolist() == saved_numpy[1].tolist()
    assert np.random.get_state()[2:] == saved_numpy[2:]
    assert random.getstate() == saved_python
    losses_second = [second.train_step(False)[0][0].item() for _ in range(3)]
    assert losses_first + losses_second == losses_full


class Marker:
    """Unpickling it would run ``touch <path>`` (what the issue's crafted checkpoint did)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __reduce__(self):
        return (os.system, (f"touch {self.path}",))


def crafted(path: Path, marker: Path, how: str) -> Path:
    payload = {"format": 2, "step": 0, "x": Marker(marker)}
    if how == "torch.save":
        torch.save(payload, path)
    else:
        path.write_bytes(pickle.dumps(payload, protocol=2))  # one torch.load can parse
    return path


@pytest.mark.parametrize("how", ["torch.save", "pickle"])
def test_a_crafted_pickle_does_not_run(how, tmp_path, monkeypatch):
    probe = tmp_path / "probe"
    # the file is live: loading it the old way (weights_only=False) runs the command
    live = crafted(tmp_path / "probe.pt", probe, how)
    with pytest.raises(RuntimeError) if how == "pickle" else nullcontext():
        torch.load(live, weights_only=False)  # a bare pickle: runs, then "bad magic number"
    assert probe.exists()

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    marker = tmp_path / "marker"
    evil = crafted(tmp_path / "crafted.pt", marker, how)
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(EXPERIMENTS / "sngan_ring8.yaml"),
            "--no-progress",
            "--tracking-uri",
            f"sqlite:///{work}/mlflow.db",
            "--resume",
            str(evil),
        ],
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --resume: {evil}: refused")
    assert "nothing in it ran" in lines[0]
    assert not marker.exists()
    assert list(work.iterdir()) == []  # no run, no store, no file


def old_format_checkpoint(registry, path: Path) -> Path:
    """What the previous version wrote: RNG states as numpy arrays and tuples."""
    trainer = Trainer(experiment(registry), workdir=path.parent, progress=False)
    state = trainer.checkpoint_state()
    del state["format"]
    state["rng"]["numpy"] = np.random.get_state()
    state["rng"]["python"] = random.getstate()
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    "case, expected",
    [
        ("junk", "not a checkpoint"),
        ("empty", "empty or truncated"),
        ("truncated", "not a checkpoint"),
        ("old format", "older checkpoint format"),
        ("missing key", "no 'critic'"),
        ("a list", "holds a list"),
    ],
)
def test_bad_checkpoints_are_one_line_naming_the_file(case, expected, registry, tmp_path):
    path = tmp_path / "bad.pt"
    if case == "junk":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif case == "empty":
        path.write_bytes(b"")
    elif case == "old format":
        old_format_checkpoint(registry, path)
    else:
        trainer = Trainer(experiment(registry), workdir=tmp_path, progress=False)
        state = trainer.checkpoint_state()
        if case == "missing key":
            del state["critic"]
        if case == "a list":
            state = [state]
        save_checkpoint(path, state)
        if case == "truncated":
            path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    message = str(info.value)
    assert message.startswith(f"{path}: ") and expected in message
    assert "\n" not in message


def test_junk_as_resume_is_exit_2_and_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x80\x04 this is not a checkpoint" * 50)
    result = CliRunner().invoke(
        main,
        ["train", str(EXPERIMENTS / "gan_ring8.yaml"), "--no-progress", "--resume", str(junk)],
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --resume: {junk}: not a checkpoint")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert [p.name for p in tmp_path.iterdir()] == ["junk.pt"]


def test_a_crafted_checkpoint_in_a_shared_store_does_not_run(shared_store, tmp_path):
    client = MlflowClient(shared_store.tracking_uri)
    from pipeline.tracking.client import ensure_experiment

    run = client.create_run(ensure_experiment(client, "crafted", shared_store))
    folder = tmp_path / "upload"
    folder.mkdir()
    marker = tmp_path / "marker"
    client.log_artifact(
        run.info.run_id, str(crafted(folder / "checkpoint.pt", marker, "torch.save")), "checkpoint"
    )
    source = f"runs:/{run.info.run_id}"
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(EXPERIMENTS / "gan_ring8.yaml"),
            "--no-progress",
            "--tracking-uri",
            shared_store.tracking_uri,
            "--resume",
            source,
        ],
    )
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [line for line in result.stderr.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith(f"error: --resume: {source} ")
    assert "refused" in errors[0] and not marker.exists()


# -- the signals -------------------------------------------------------------------------


def test_first_signal_asks_the_second_interrupts(sigterm_guard):
    request = StopRequest()
    before = signal.getsignal(signal.SIGINT)
    with stop_on_signals(request):
        os.kill(os.getpid(), signal.SIGINT)
        assert request.signum == signal.SIGINT  # no exception: the loop decides when
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs at the next bytecode; never reached
    # the handlers in force before are back
    assert signal.getsignal(signal.SIGINT) is before
    with pytest.raises(RuntimeError, match="no training"):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(1)


def sigterm_at(step: int):
    def on_eval(at: int, metrics: dict[str, float]) -> None:
        if at == step:
            os.kill(os.getpid(), signal.SIGTERM)

    return on_eval


def test_sigterm_stops_at_a_step_boundary_logs_the_checkpoint_and_resumes_identically(
    registry, shared_store, tmp_path, sigterm_guard
):
    exp = experiment(registry, "train.steps=9", "train.eval_every=3", "train.log_every=2")
    client = MlflowClient(shared_store.tracking_uri)
    started: list[str] = []
    # the signal arrives during the evaluation of step 3; the loop stops before step 4
    with pytest.raises(TrainingInterrupted) as info:
        run_training(
            exp,
            tracking=shared_store,
            progress=False,
            on_eval=sigterm_at(3),
            on_run_started=started.append,
        )
    assert info.value.step == 3 and info.value.signum == signal.SIGTERM
    killed = client.get_run(started[0])
    assert killed.info.status == "KILLED"
    assert killed.data.tags["failure_reason"].startswith("interrupted by SIGTERM at step 3")
    state = artifact_checkpoint(client, started[0], tmp_path / "killed")
    assert state["step"] == 3
    # every step done is logged, also those after the last log_every flush
    assert [s for s, _ in history(client, started[0], "loss/critic")] == [1, 2, 3]

    resumed = run_training(exp, tracking=shared_store, progress=False, resume_state=state)
    full = run_training(exp, tracking=shared_store, progress=False)
    for key in ("loss/critic", "loss/generator"):
        both = history(client, started[0], key) + history(client, resumed.run_id, key)
        assert both == history(client, full.run_id, key)
    end_resumed = artifact_checkpoint(client, resumed.run_id, tmp_path / "resumed")
    end_full = artifact_checkpoint(client, full.run_id, tmp_path / "full")
    assert end_resumed["step"] == end_full["step"] == 9
    for part in ("generator", "critic", "optimizer_generator", "optimizer_critic"):
        assert tensors_equal(end_resumed[part], end_full[part]), part
    # the RNGs training draws from (Python's `random` is neither seeded nor used by it)
    for rng in ("torch", "data", "numpy"):
        assert tensors_equal(end_resumed["rng"][rng], end_full["rng"][rng]), rng


def test_a_signal_after_the_last_step_keeps_the_run_finished_and_still_stops(
    registry, shared_store, sigterm_guard
):
    exp = experiment(registry, "train.steps=4", "train.eval_every=2")
    started: list[str] = []
    with pytest.raises(TrainingInterrupted) as info:
        run_training(
            exp,
            tracking=shared_store,
            progress=False,
            on_eval=sigterm_at(4),  # the last evaluation: no step boundary follows
            on_run_started=started.append,
        )
    assert info.value.finished and info.value.step == 4
    client = MlflowClient(shared_store.tracking_uri)
    assert client.get_run(started[0]).info.status == "FINISHED"
    assert {"samples.npy", "loss_curves.png"} <= {a.path for a in client.list_artifacts(started[0])}


def test_a_signal_while_the_run_is_created_ends_it_killed_not_running(
    registry, shared_store, sigterm_guard
):
    """Ctrl-C in the window after the MLflow run exists and before the first step (a
    compare worker hit it under load: the trial's run stayed RUNNING, the worker exited 1)."""
    exp = experiment(registry, "train.steps=6", "train.eval_every=3")
    started: list[str] = []

    def interrupt_when_started(run_id: str) -> None:
        started.append(run_id)
        os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt) as info:  # before the loop: stopped at once
        run_training(
            exp, tracking=shared_store, progress=False, on_run_started=interrupt_when_started
        )
    assert info.value.run_id == started[0]  # what the CLI names in its line
    run = MlflowClient(shared_store.tracking_uri).get_run(started[0])
    assert run.info.status == "KILLED"
    assert run.data.tags["failure_reason"] == "interrupted (Ctrl-C or SIGTERM)"


def test_checkpoint_every_replaces_the_runs_checkpoint_while_it_trains(
    registry, shared_store, tmp_path
):
    """At each evaluation the run already holds the checkpoint of the previous
    checkpoint step (uploaded in the background); at the end, the final one."""
    exp = experiment(registry, "train.steps=8", "train.eval_every=4", "train.checkpoint_every=2")
    client = MlflowClient(shared_store.tracking_uri)
    tracker = RunTracker.start(shared_store, "checkpoint_every")
    seen: list[tuple[int, int]] = []
    states: dict[int, dict] = {}

    def on_eval(step: int, metrics: dict[str, float]) -> None:
        # checkpoint `step` is written after this callback: `step - 2` is the latest
        deadline = time.time() + 60
        found = None
        while time.time() < deadline and found != step - 2:
            try:
                state = artifact_checkpoint(client, tracker.run_id, tmp_path / f"e{step}")
                found = state["step"]
                states[found] = state
            except Exception:  # not uploaded yet, or being copied
                time.sleep(0.05)
        seen.append((step, found))

    workdir = tmp_path / "work"
    workdir.mkdir()
    Trainer(exp, tracker=tracker, workdir=workdir, progress=False, on_eval=on_eval).run()
    tracker.finish("FINISHED")
    assert seen == [(4, 2), (8, 6)]
    assert [a.path for a in client.list_artifacts(tracker.run_id, "checkpoint")] == [
        "checkpoint/checkpoint.pt"
    ]
    # the local copies went once uploaded
    assert not any((workdir / "checkpoints").rglob("*.pt"))
    # the copy written in the background is the state of its step: resumed from step 6,
    # two more steps give the final checkpoint exactly
    again = Trainer(exp, workdir=workdir, progress=False)
    again.restore(states[6])
    again.train_step(False), again.train_step(True)
    final = artifact_checkpoint(client, tracker.run_id, tmp_path / "final")
    assert final["step"] == 8
    for part in ("generator", "critic", "optimizer_generator", "optimizer_critic"):
        assert tensors_equal(final[part], again.checkpoint_state()[part]), part


class SigtermOnFirstReport(optuna.pruners.BasePruner):
    """A real pruner that never prunes; asked at the first evaluation, it sends SIGTERM to
    this process, as `kill` would while a trial trains."""

    def prune(self, study, trial) -> bool:
        if not getattr(self, "sent", False):
            self.sent = True
            os.kill(os.getpid(), signal.SIGTERM)
        return False


def test_an_interrupted_tune_trial_ends_killed_with_its_checkpoint(tmp_path, sigterm_guard):
    from pipeline.host.registry import default_registry
    from pipeline.tuning.tuner import TuneOptions, Tuner

    tracking = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db",
        artifact_location=str(tmp_path / "artifacts"),
    )
    tuner = Tuner(
        EXPERIMENTS / "gan_ring8.yaml",
        tiny("gan_ring8.yaml", *SMALL, "train.steps=6", "train.eval_every=2"),
        TuneOptions(n_trials=3, seed=0, storage=str(tmp_path / "optuna.journal")),
        registry=default_registry(),
        tracking=tracking,
        echo=lambda line: None,
    )
    tuner.pruner = SigtermOnFirstReport()
    with pytest.raises(KeyboardInterrupt):
        tuner.run()
    study = optuna.load_study(
        study_name="gan_ring8",
        storage=optuna.storages.JournalStorage(
            optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
        ),
    )
    assert [t.state.name for t in study.trials] == ["FAIL"]  # as Optuna records Ctrl-C
    client = MlflowClient(tracking.tracking_uri)
    run_id = study.trials[0].user_attrs["mlflow_run_id"]
    run = client.get_run(run_id)
    assert run.info.status == "KILLED"
    assert artifact_checkpoint(client, run_id, tmp_path / "trial")["step"] == 2
    parent = client.get_run(run.data.tags["mlflow.parentRunId"])
    assert parent.info.status == "KILLED"


# -- real processes ----------------------------------------------------------------------

#: 600 generator steps of a small GAN: seconds, so a signal sent once the first periodic
#: checkpoint (step 10) is visible lands mid-run
STEPS = 600
PROCESS_OVERRIDES = [
    f"train.steps={STEPS}",
    "model.g_width=16",
    "model.d_width=16",
    "train.batch_size=32",
    f"train.eval_every={STEPS}",
    "train.eval_samples=200",
    "train.log_every=25",
    "train.checkpoint_every=10",
]


def pipeline_train(store: Path, name: str, *extra: str) -> subprocess.Popen:
    args = [sys.executable, "-m", "pipeline.cli", "train", str(EXPERIMENTS / "gan_ring8.yaml")]
    args += ["--no-progress", "--tracking-uri", f"sqlite:///{store}/mlflow.db"]
    args += ["--experiment-name", name, *extra]
    for o in PROCESS_OVERRIDES:
        args += ["-o", o]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.Popen(
        args, cwd=store, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_id_of(stdout: str) -> str:
    return stdout.split("MLflow run ")[1].split()[0]


@pytest.fixture(scope="module")
def process_store(tmp_path_factory):
    """One MLflow store (artifacts under ./mlartifacts) and the uninterrupted reference."""
    store = tmp_path_factory.mktemp("signals")
    proc = pipeline_train(store, "reference")
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return store, run_id_of(out)


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signalled_train_process_resumes_to_the_same_result(signum, process_store):
    store, reference = process_store
    name = signal.Signals(signum).name.lower()
    proc = pipeline_train(store, name)
    artifacts = store / "mlartifacts" / name
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list(artifacts.glob("*/artifacts/checkpoint/checkpoint.pt")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it was signalled"
    sent = time.perf_counter()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    exit_s = time.perf_counter() - sent
    assert proc.returncode == 130, err
    assert "continue it with --resume runs:/" in err
    killed_id = err.split("--resume runs:/")[1].split()[0]

    client = MlflowClient(f"sqlite:///{store}/mlflow.db")
    killed = client.get_run(killed_id)
    assert killed.info.status == "KILLED"
    step = artifact_checkpoint(client, killed_id, store / f"{name}-killed")["step"]
    assert 10 <= step < STEPS
    assert killed.data.tags["failure_reason"].startswith(
        f"interrupted by {signal.Signals(signum).name} at step {step}"
    )
    assert exit_s < 60

    resume = pipeline_train(store, name, "--resume", f"runs:/{killed_id}")
    out, err = resume.communicate(timeout=600)
    assert resume.returncode == 0, err
    resumed_id = run_id_of(out)
    for key in ("loss/critic", "loss/generator"):
        both = history(client, killed_id, key) + history(client, resumed_id, key)
        assert [s for s, _ in both] == list(range(1, STEPS + 1))
        assert both == history(client, reference, key)
    end = artifact_checkpoint(client, resumed_id, store / f"{name}-resumed")
    ref = artifact_checkpoint(client, reference, store / f"{name}-reference")
    assert end["step"] == ref["step"] == STEPS
    for part in ("generator", "critic", "optimizer_generator", "optimizer_critic"):
        assert tensors_equal(end[part], ref[part]), part
