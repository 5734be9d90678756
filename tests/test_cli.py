"""`pipeline train`, `plugins` and `ui` end to end, read back through MlflowClient."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from pipeline.cli.commands import main
from pipeline.cli.ui_server import STOP_TIMEOUT_S
from tests.conftest import EXPERIMENTS, GAN_PIPELINE, ROOT, train_args

SEED_EXPERIMENTS = [
    "gan_ring8.yaml",
    "wgan_clip_ring8.yaml",
    "wgan_gp_grid25.yaml",
    "sngan_ring8.yaml",
    "gan_digits.yaml",
]


@pytest.mark.slow
@pytest.mark.parametrize("file", SEED_EXPERIMENTS)
def test_train_end_to_end_is_tracked(file, shared_store, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.yaml").write_text(f"artifact_location: {shared_store.artifact_location}\n")
    result = CliRunner().invoke(main, train_args(file, shared_store))
    assert result.exit_code == 0, result.output
    run_id = result.output.split("MLflow run ")[1].split()[0]
    client = MlflowClient(shared_store.tracking_uri)
    run = client.get_run(run_id)
    name = file.removesuffix(".yaml")
    assert run.info.status == "FINISHED"
    assert client.get_experiment(run.info.experiment_id).name == name
    params = run.data.params
    assert params["train.steps"] == "6" and params["train.eval_every"] == "3"
    assert params["dataset.name"] in ("ring8", "grid25", "digits")
    assert "optimizer.critic.lr" in params and "constraint.name" in params
    tags = run.data.tags
    assert tags["plugin.loss"] == params["loss.name"]
    assert tags["plugin.loss.package"] == GAN_PIPELINE
    history = client.get_metric_history(run_id, "loss/critic")
    assert sorted(m.step for m in history) == [1, 2, 3, 4, 5, 6]
    assert "loss/generator" in run.data.metrics and "grad_norm/critic" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"config.yaml", "loss_curves.png", "checkpoint", "samples"} <= artifacts
    plots = {a.path for a in client.list_artifacts(run_id, "samples")}
    assert plots == {"samples/step_0000003.png", "samples/step_0000006.png"}
    models = client.search_logged_models([run.info.experiment_id])
    assert any(m.source_run_id == run_id and m.name == "generator" for m in models)
    if params["dataset.name"] == "digits":
        assert set(run.data.metrics) >= {"w1"}
        assert "progression.gif" in artifacts  # the evaluation grids, animated
        return
    assert "samples.npy" in artifacts
    assert set(run.data.metrics) >= {"modes", "hq_fraction", "reverse_kl", "w1"}
    # the final metrics are computed on exactly the logged samples
    local = client.download_artifacts(run_id, "samples.npy", str(tmp_path))
    samples = torch.from_numpy(np.load(local))
    assert samples.shape == (500, 2)
    from pipeline.host.registry import default_registry

    reg = default_registry()
    dataset = reg.get("dataset", params["dataset.name"]).cls()
    for metric in ("modes", "hq_fraction", "reverse_kl", "w1"):
        value = reg.get("metric", metric).cls().compute(samples, dataset)
        assert value == pytest.approx(run.data.metrics[metric], rel=1e-6, abs=1e-9)


BAD_CLI = [
    (["-o", "train.foo=1"], "train.foo: unknown key"),
    (["-o", "loss.name=nope"], "available: bce, hinge, least_squares, wgan"),
    (["-o", "train.steps=abc"], "train.steps"),
    (["-o", "constraint.weight=-0.5"], "constraint.weight"),
    (["-o", "train.n_critic=0"], "train.n_critic"),
    (["-o", "optimizer.critic.lr=0"], "optimizer.critic.lr"),
    (["-o", "train.steps=0"], "train.steps"),
    (["-o", "nodots"], "must look like key.path=value"),
]


@pytest.mark.parametrize(("extra", "words"), BAD_CLI)
def test_bad_input_exits_2_and_creates_nothing(extra, words, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = CliRunner().invoke(main, ["train", str(EXPERIMENTS / "wgan_gp_grid25.yaml"), *extra])
    assert result.exit_code == 2, result.output
    assert words in result.output
    assert result.output.count("error:") == 1
    assert list(tmp_path.iterdir()) == []  # no mlflow.db, no artifacts


def test_clip_must_be_positive(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["train", str(EXPERIMENTS / "wgan_clip_ring8.yaml"), "-o", "constraint.clip=0"]
    )
    assert result.exit_code == 2 and "constraint.clip" in result.output
    assert list(tmp_path.iterdir()) == []


def test_cuda_device_without_cuda_is_refused(monkeypatch, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA; the refusal only happens without it")
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["train", str(EXPERIMENTS / "gan_ring8.yaml"), "--device", "cuda:0"]
    )
    assert result.exit_code == 2 and "train.device" in result.output
    assert list(tmp_path.iterdir()) == []


def test_plugins_lists_every_builtin_with_its_package():
    result = CliRunner().invoke(main, ["plugins", "--json"])
    assert result.exit_code == 0
    rows = json.loads(result.output)
    names = {(r["kind"], r["name"]) for r in rows}
    assert ("loss", "hinge") in names and ("constraint", "spectral_norm") in names
    assert ("dataset", "grid25") in names and ("metric", "reverse_kl") in names
    version = GAN_PIPELINE.removeprefix("gan-pipeline ")
    assert all(r["package"] == "built-in" and r["version"] == version for r in rows)
    table = CliRunner().invoke(main, ["plugins"]).output
    assert "gradient_penalty" in table and "constraint" in table


def _pipeline(*args: str, **kw) -> subprocess.Popen:
    exe = os.path.join(os.path.dirname(sys.executable), "pipeline")
    return subprocess.Popen(
        [exe, *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw
    )


@pytest.mark.slow
def test_sigterm_marks_the_run_killed(tmp_path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = _pipeline(
        "train",
        str(EXPERIMENTS / "wgan_gp_grid25.yaml"),
        "--no-progress",
        "--tracking-uri",
        uri,
        "-o",
        "train.steps=100000",
        cwd=tmp_path,
    )
    client = MlflowClient(uri)
    deadline = time.time() + 90
    runs = []
    while time.time() < deadline and not runs:
        time.sleep(1)
        if (tmp_path / "mlflow.db").exists():
            try:
                exp = client.get_experiment_by_name("wgan_gp_grid25")
                runs = client.search_runs([exp.experiment_id]) if exp else []
            except Exception:
                runs = []
    assert runs, "the run never started"
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    run = client.get_run(runs[0].info.run_id)
    assert run.info.status == "KILLED"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_ui_serves_the_configured_store(tmp_path):
    port = _free_port()
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    proc = _pipeline("ui", "--port", str(port), "--tracking-uri", uri, cwd=tmp_path)
    try:
        deadline = time.time() + 90
        body = None
        while time.time() < deadline and body is None:
            time.sleep(1)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
                    body = r.read().decode()
            except OSError:
                if proc.poll() is not None:
                    break
        assert body is not None and "OK" in body, proc.stdout.read() if proc.stdout else ""
        assert (tmp_path / "mlflow.db").exists()
    finally:
        proc.terminate()
        # the server may take up to STOP_TIMEOUT_S to end before `pipeline ui` kills it
        proc.wait(timeout=STOP_TIMEOUT_S + 30)
    # the default host is loopback: no warning about a UI without authentication
    assert "without authentication" not in (proc.stdout.read() if proc.stdout else "")
    # the server's workers went with it: nothing answers on the port any more
    time.sleep(1)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5)


def test_readme_commands_exist():
    readme = (ROOT / "README.md").read_text()
    for command in (
        "make demo",
        "make test",
        "pipeline plugins",
        "pipeline train",
        "pipeline ui",
        "make bench-quick",
    ):
        assert command in readme


@pytest.mark.slow
def test_resume_continues_a_run_and_refuses_other_settings(shared_store, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    first = CliRunner().invoke(main, train_args("sngan_ring8.yaml", shared_store))
    assert first.exit_code == 0, first.output
    run_id = first.output.split("MLflow run ")[1].split()[0]

    refused = CliRunner().invoke(
        main,
        [
            *train_args(
                "sngan_ring8.yaml", shared_store, "train.steps=10", "optimizer.critic.lr=0.001"
            ),
            "--resume",
            f"runs:/{run_id}",
        ],
    )
    assert refused.exit_code == 2 and "optimizer.critic.lr" in refused.output
    too_short = CliRunner().invoke(
        main, [*train_args("sngan_ring8.yaml", shared_store), "--resume", f"runs:/{run_id}"]
    )
    assert too_short.exit_code == 2 and "at step 6" in too_short.output

    resumed = CliRunner().invoke(
        main,
        [
            *train_args("sngan_ring8.yaml", shared_store, "train.steps=10"),
            "--resume",
            f"runs:/{run_id}",
        ],
    )
    assert resumed.exit_code == 0, resumed.output
    new_id = resumed.output.split("MLflow run ")[1].split()[0]
    client = MlflowClient(shared_store.tracking_uri)
    run = client.get_run(new_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["resumed_from"] == f"runs:/{run_id}"
    assert run.data.tags["resumed_at_step"] == "6"
    steps = sorted(m.step for m in client.get_metric_history(new_id, "loss/critic"))
    assert steps == [7, 8, 9, 10]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({}, "PASSIVE"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),  # the user's own stays
        ({"GOMP_SPINCOUNT": "300000"}, None),  # so does their spin count, without a policy
    ],
    ids=["unset", "user-policy", "user-spincount"],
)
def test_the_pipeline_lets_openmp_threads_sleep_unless_told_otherwise(given, expected):
    """`pipeline …` sets OMP_WAIT_POLICY=PASSIVE before torch is imported (libgomp reads it
    when it starts), for its own process and the workers it starts."""
    probe = (
        "import os, sys\n"
        "from click.testing import CliRunner\n"
        "from pipeline.cli.commands import main\n"
        "assert CliRunner().invoke(main, ['plugins']).exit_code == 0\n"
        "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run(
        [sys.executable, "-c", probe], env=env | given, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [str(expected), "False"]
