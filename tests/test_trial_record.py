"""What a tuning trial records (``run_training(trial=True)``), its live view, and what
``complete_trial_run`` adds afterwards: real torch, a real MLflow SQLite store."""

from __future__ import annotations

import os
import time
from pathlib import Path

import mlflow.pytorch
import numpy as np
import pytest
import torch
from mlflow.tracking import MlflowClient

from pipeline.experiment.config import load_experiment
from pipeline.tracking.generator_model import fluent_tracking_uri
from pipeline.training import trial_record
from pipeline.training.run import run_training
from pipeline.training.trial_record import (
    COMPLETED_TAG,
    PER_STEP_CSV,
    RECORD_TAG,
    complete_trial_run,
    read_per_step_csv,
)
from tests.conftest import EXPERIMENTS, tiny

SMALL = ("model.g_width=16", "model.d_width=16", "train.batch_size=32")


def experiment(registry, *extra: str, file: str = "wgan_gp_grid25.yaml"):
    # MLP widths for grid25; digits without the metrics that train a classifier first
    small = SMALL if "grid25" in file else ("train.batch_size=32", "metrics=[w1]")
    return load_experiment(EXPERIMENTS / file, tiny(file, *small, *extra), registry=registry)


def artifacts(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    return {a.path for a in client.list_artifacts(run_id, path)}


def logged_generators(client: MlflowClient, run_id: str) -> list:
    experiment_id = client.get_run(run_id).info.experiment_id
    models = client.search_logged_models(experiment_ids=[experiment_id])
    return [m for m in models if m.source_run_id == run_id and m.name == "generator"]


def test_a_trial_logs_window_means_and_samples_instead_of_figures(registry, shared_store, tmp_path):
    # tiny(): 6 steps, log_every 2, evaluations at steps 3 and 6
    result = run_training(experiment(registry), tracking=shared_store, progress=False, trial=True)
    client = MlflowClient(shared_store.tracking_uri)
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED" and run.data.tags[RECORD_TAG] == "trial"

    # MLflow holds each per-step key's mean over each log_every window, at its last step
    for key in ("loss/critic", "loss/generator", "penalty", "wasserstein_estimate"):
        steps, values = result.history[key]
        assert steps == [1, 2, 3, 4, 5, 6]
        logged = sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, key))
        assert [s for s, _ in logged] == [2, 4, 6]
        windows = (values[0:2], values[2:4], values[4:6])
        for (step, value), window in zip(logged, windows, strict=True):
            # float32 values summed in float64 by numpy: tolerance for the order of the sum
            assert value == pytest.approx(sum(window) / 2, rel=1e-12), (key, step)
    # measured once per window, so logged as they are; evaluations as in a train run
    norms = client.get_metric_history(run.info.run_id, "grad_norm/critic")
    assert [m.step for m in norms] == result.history["grad_norm/critic"][0] == [2, 4, 6]
    assert sorted(m.step for m in client.get_metric_history(run.info.run_id, "w1")) == [3, 6]

    # every value of every step is in the CSV, exactly (written with repr, read back)
    csv_path = client.download_artifacts(run.info.run_id, PER_STEP_CSV, str(tmp_path))
    per_step = read_per_step_csv(Path(csv_path))
    assert set(per_step) == set(result.history)
    for key, (steps, values) in result.history.items():
        assert per_step[key][0].tolist() == steps
        assert per_step[key][1].tolist() == values

    # each evaluation's samples, no figure, no loss curves, no generator model
    assert {"config.yaml", "samples.npy", "checkpoint", PER_STEP_CSV} <= artifacts(
        client, run.info.run_id
    )
    assert "loss_curves.png" not in artifacts(client, run.info.run_id)
    assert artifacts(client, run.info.run_id, "samples") == {
        "samples/step_0000003.npy",
        "samples/step_0000006.npy",
    }
    last = np.load(client.download_artifacts(run.info.run_id, "samples/step_0000006.npy"))
    final = np.load(client.download_artifacts(run.info.run_id, "samples.npy"))
    assert np.array_equal(last, final)  # the last evaluation's samples are the final ones
    assert logged_generators(client, run.info.run_id) == []


def test_a_running_trial_has_its_metrics_in_the_store_within_the_send_interval(
    registry, shared_store, monkeypatch
):
    interval = 0.5
    monkeypatch.setattr(trial_record, "TRIAL_SEND_INTERVAL_S", interval)
    client = MlflowClient(shared_store.tracking_uri)
    seen: dict[str, object] = {}

    def on_eval(step: int, metrics: dict[str, float]) -> None:
        if step == 4:
            time.sleep(interval * 1.2)  # the window closing at step 6 is due to be sent
            return
        # step 8, the last evaluation: the trial is still running
        run_id = seen["run_id"]
        deadline = time.monotonic() + 10  # the background write, on a loaded machine
        while True:
            steps = [m.step for m in client.get_metric_history(run_id, "loss/critic")]
            w1 = [m.step for m in client.get_metric_history(run_id, "w1")]
            if 6 in steps or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        seen.update(status=client.get_run(run_id).info.status, steps=steps, w1=w1)

    exp = experiment(registry, "train.steps=8", "train.eval_every=4")
    run_training(
        exp,
        tracking=shared_store,
        progress=False,
        trial=True,
        on_eval=on_eval,
        on_run_started=lambda run_id: seen.update(run_id=run_id),
    )
    assert seen["status"] == "RUNNING"
    assert seen["steps"] == [2, 4, 6]  # every window up to the send; step 8's comes at the end
    assert seen["w1"] == [4]
    final = [m.step for m in client.get_metric_history(seen["run_id"], "loss/critic")]
    assert final == [2, 4, 6, 8]


@pytest.mark.parametrize(
    ("file", "figures"),
    [("wgan_gp_grid25.yaml", set()), ("wgan_gp_digits.yaml", {"progression.gif"})],
)
def test_completing_a_trial_adds_its_figures_and_generator_once(
    registry, shared_store, file, figures
):
    exp = experiment(registry, file=file)
    result = run_training(exp, tracking=shared_store, progress=False, trial=True)
    run_id = result.run_id
    client = MlflowClient(shared_store.tracking_uri)

    assert complete_trial_run(shared_store, run_id, registry) is True
    assert client.get_run(run_id).data.tags[COMPLETED_TAG] == "true"
    assert {"loss_curves.png", *figures} <= artifacts(client, run_id)
    assert artifacts(client, run_id, "samples") == {
        f"samples/step_000000{s}.{ext}" for s in (3, 6) for ext in ("npy", "png")
    }
    # the logged generator is the trained one: it reproduces the last evaluation's samples
    uri = f"runs:/{run_id}/generator"
    with fluent_tracking_uri(shared_store.tracking_uri):
        generator = mlflow.pytorch.load_model(uri)
        noise_dim = int(mlflow.models.get_model_info(uri).metadata["noise_dim"])
    generator.eval()
    eval_rng = torch.Generator().manual_seed(exp.train.seed + 1)
    noise = torch.randn(exp.train.eval_samples, noise_dim, generator=eval_rng)
    with torch.no_grad():
        again = generator(noise)
    last = np.load(client.download_artifacts(run_id, "samples/step_0000006.npy"))
    # exact: the same computation in the same order, in one process on one CPU
    assert np.array_equal(again[: len(last)].numpy(), last)

    # a second call changes nothing
    assert complete_trial_run(shared_store, run_id, registry) is False
    assert len(logged_generators(client, run_id)) == 1


def test_only_finished_trials_are_completed(registry, shared_store):
    client = MlflowClient(shared_store.tracking_uri)
    trained = run_training(experiment(registry), tracking=shared_store, progress=False)
    assert complete_trial_run(shared_store, trained.run_id, registry) is False  # a train run

    class Stop(Exception):
        pass

    def stop(step, metrics):
        raise Stop

    started: list[str] = []
    with pytest.raises(Stop):
        run_training(
            experiment(registry),
            tracking=shared_store,
            progress=False,
            trial=True,
            on_eval=stop,
            status_for=lambda exc: "KILLED",  # as a pruned trial ends
            on_run_started=started.append,
        )
    assert client.get_run(started[0]).info.status == "KILLED"
    # its evaluation's samples were logged as they came
    assert artifacts(client, started[0], "samples") == {"samples/step_0000003.npy"}
    assert complete_trial_run(shared_store, started[0], registry) is False
    assert COMPLETED_TAG not in client.get_run(started[0]).data.tags


@pytest.mark.parametrize("users_uri", [None, "sqlite:///somewhere-else.db"])
def test_logging_the_generator_leaves_the_process_tracking_uri_alone(
    tmp_path, monkeypatch, users_uri
):
    """``log_model`` needs MLflow's fluent URI, but ``mlflow.set_tracking_uri`` exports it to
    the process and its children, where it beats ``mlflow.yaml``: put back as it was."""
    from pipeline.tracking.client import RunTracker, TrackingSettings

    if users_uri is None:
        monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    else:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", users_uri)
    settings = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "art")
    )
    tracker = RunTracker.start(settings, "generator-uri")
    tracker.log_generator(torch.nn.Linear(2, 2), noise_dim=2)
    assert os.environ.get("MLFLOW_TRACKING_URI") == users_uri
    models = MlflowClient(settings.tracking_uri).search_logged_models([tracker.experiment_id])
    assert [m.name for m in models] == ["generator"]
    assert models[0].source_run_id == tracker.run_id
