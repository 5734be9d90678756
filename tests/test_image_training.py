"""DCGAN on the digits: the four constraints on a conv critic, spectral norm of a conv
kernel, an end-to-end ``pipeline train`` and a 3-trial ``pipeline tune`` read back from
MLflow, and the animated progression of the evaluation grids."""

from __future__ import annotations

import mlflow.pytorch
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from mlflow.tracking import MlflowClient
from PIL import Image
from torch import nn

from pipeline.cli.commands import main
from pipeline.experiment.config import load_experiment
from pipeline.tracking.client import TrackingSettings
from pipeline.tracking.generator_model import fluent_tracking_uri
from pipeline.training.plots import animate_grids
from pipeline.training.trainer import Trainer
from pipeline.tuning.tuner import TuneOptions, Tuner
from pipeline_plugins.constraints.gradient_penalty import gradient_penalty
from pipeline_plugins.constraints.spectral_norm import apply_spectral_norm, sigma_estimates
from pipeline_plugins.datasets.digits import Digits
from pipeline_plugins.metrics.classifier_fd import ClassifierFD
from tests.conftest import EXPERIMENTS, IMAGE_METRICS

#: a few steps of a narrow DCGAN: enough to exercise every path, seconds to run
TINY = [
    "train.steps=6",
    "train.eval_every=3",
    "train.log_every=2",
    "train.eval_samples=200",
    "train.batch_size=32",
    "model.channels=16",
]


#: conv trainings on one torch thread; the classifier of the image metrics comes from the
#: session's cache (conftest's ``classifier_cache``), shared with test_image_metrics
pytestmark = pytest.mark.usefixtures("one_thread")


def spectral_sigma(weight: torch.Tensor) -> float:
    """σ of a conv kernel reshaped to (out_channels, -1), as SN-GAN defines it."""
    return float(torch.linalg.matrix_norm(weight.detach().reshape(weight.shape[0], -1), ord=2))


def test_spectral_norm_of_a_conv_kernel_converges_to_one():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 16, kernel_size=4, stride=2, padding=1)
    net = apply_spectral_norm(nn.Sequential(conv))
    original = conv.parametrizations.weight.original
    with torch.no_grad():  # a big change of W after the 15 power rounds done at wrap time
        original.mul_(10).add_(5 * torch.randn_like(original))
    true_sigma = spectral_sigma(original)
    x = torch.randn(2, 3, 8, 8)
    errors = []
    for _ in range(60):
        net.train()
        net(x)  # one power iteration per forward pass in train mode (Miyato 2018, App. A)
        net.eval()  # reading the weight in eval mode runs no iteration
        errors.append(abs(spectral_sigma(conv.weight) - 1))
    assert errors[0] > 1e-2  # the stale u: the normalized kernel's σ was off at first
    assert errors[-1] < 1e-5
    assert errors[-1] < errors[20] < errors[5] < errors[0]
    estimate = float(sigma_estimates(net)["0"])
    assert estimate == pytest.approx(true_sigma, rel=1e-4)


def train_tiny(constraint: str, registry, tmp_path, *extra: str) -> Trainer:
    exp = load_experiment(
        EXPERIMENTS / "gan_digits.yaml",
        [*TINY, "loss.name=wgan", f"constraint.name={constraint}", "metrics=[w1]", *extra],
        registry=registry,
    )
    trainer = Trainer(exp, device="cpu", workdir=tmp_path, progress=False, write_artifacts=False)
    trainer.run()
    return trainer


def test_no_constraint_trains_the_conv_critic(registry, tmp_path):
    trainer = train_tiny("none", registry, tmp_path)
    assert trainer.step == 6
    assert all(np.isfinite(v).all() for _, v in trainer.history.values())


def test_weight_clipping_on_the_conv_critic(registry, tmp_path):
    trainer = train_tiny("weight_clipping", registry, tmp_path, "constraint.clip=0.01")
    params = list(trainer.critic.parameters())
    assert any(p.dim() == 4 for p in params)  # conv kernels are clipped too
    assert all(p.abs().max() <= 0.01 for p in params)
    assert any((p.abs() == 0.01).any() for p in params)  # the bound was reached: it acted


def test_gradient_penalty_on_image_interpolates(registry, tmp_path):
    trainer = train_tiny("gradient_penalty", registry, tmp_path, "constraint.weight=10")
    _, penalties = trainer.history["penalty"]
    assert len(penalties) == 6 and all(p > 0 and np.isfinite(p) for p in penalties)
    real = Digits().sample(16, torch.Generator().manual_seed(0))
    fake = torch.rand(16, 1, 8, 8) * 2 - 1
    for p in trainer.critic.parameters():
        p.requires_grad_(True)  # the loop leaves them off after its generator step
    value = gradient_penalty(trainer.critic, real, fake)
    assert value.ndim == 0 and torch.isfinite(value) and value > 0
    (grad,) = torch.autograd.grad(value, next(trainer.critic.parameters()))
    assert grad.abs().sum() > 0  # the penalty reaches the critic's conv weights


def test_spectral_norm_on_the_conv_critic(registry, tmp_path):
    trainer = train_tiny("spectral_norm", registry, tmp_path)
    critic = trainer.critic
    layers = [m for m in critic.modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    assert sum(isinstance(m, nn.Conv2d) for m in layers) == 2 and len(layers) == 3
    assert all(hasattr(m, "parametrizations") for m in layers)
    assert {k for k in trainer.history if k.startswith("sigma/")} == {
        "sigma/net.0",
        "sigma/net.2",
        "sigma/head",
    }
    critic.eval()  # the weights as the last training step left them: σ close to 1 already
    for m in layers:
        assert spectral_sigma(m.weight) == pytest.approx(1, abs=0.05)
    x = Digits().sample(8, torch.Generator().manual_seed(1))
    with torch.no_grad():
        for _ in range(200):  # more power rounds without optimizer steps: σ → 1
            critic.train()
            critic(x)
    critic.eval()
    for m in layers:
        assert spectral_sigma(m.weight) == pytest.approx(1, abs=1e-3)


@pytest.mark.slow
def test_pipeline_train_on_digits_logs_the_image_metrics(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    (tmp_path / "mlflow.yaml").write_text(f"artifact_location: {tmp_path / 'artifacts'}\n")
    args = ["train", str(EXPERIMENTS / "sngan_digits.yaml"), "--no-progress"]
    args += ["--tracking-uri", uri, "--device", "cpu"]
    for o in TINY:
        args += ["-o", o]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run_id = result.output.split("MLflow run ")[1].split()[0]
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    metrics = run.data.metrics
    assert IMAGE_METRICS | {"w1"} <= set(metrics)
    assert metrics["classifier_accuracy"] >= 0.97
    assert 1 <= metrics["class_coverage"] <= 10
    assert 0 <= metrics["precision"] <= 1 and 0 <= metrics["recall"] <= 1
    history = client.get_metric_history(run_id, "classifier_fd")
    assert sorted(m.step for m in history) == [3, 6]
    grids = {a.path for a in client.list_artifacts(run_id, "samples")}
    assert grids == {"samples/step_0000003.png", "samples/step_0000006.png"}
    # the animated progression: one frame per evaluation
    gif = client.download_artifacts(run_id, "progression.gif", str(tmp_path))
    with Image.open(gif) as animation:
        assert animation.format == "GIF" and animation.n_frames == 2
    # the logged value is the metric of the logged generator's evaluation samples
    with fluent_tracking_uri(client.tracking_uri):
        generator = mlflow.pytorch.load_model(f"runs:/{run_id}/generator")
    generator.eval()
    noise = torch.randn(200, 64, generator=torch.Generator().manual_seed(0 + 1))
    with torch.no_grad():
        samples = generator(noise)
    value = ClassifierFD().compute(samples, Digits())
    assert value == pytest.approx(metrics["classifier_fd"], rel=1e-4)


@pytest.mark.slow
def test_three_trial_tune_on_digits(tmp_path, monkeypatch, registry):
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracking = TrackingSettings(tracking_uri=uri, artifact_location=str(tmp_path / "artifacts"))
    lines: list[str] = []
    tuner = Tuner(
        EXPERIMENTS / "wgan_gp_digits.yaml",
        [*TINY, "train.steps=4", "train.eval_every=4"],
        TuneOptions(n_trials=3, seed=0, device="cpu"),
        registry=registry,
        tracking=tracking,
        echo=lines.append,
    )
    study = tuner.run()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("wgan_gp_digits")
    runs = client.search_runs([exp.experiment_id])
    parents = [r for r in runs if r.data.tags.get("pipeline.role") == "study"]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 1 and len(children) == 3
    values = []
    best_run = study.best_trial.user_attrs["mlflow_run_id"]
    for child in children:
        assert child.info.status == "FINISHED"
        assert IMAGE_METRICS <= set(child.data.metrics)
        assert 1 <= int(child.data.params["train.n_critic"]) <= 10
        assert 0.1 <= float(child.data.params["constraint.weight"]) <= 100
        # a trial keeps the grid's images; the best one gets the figures when the tune ends
        grids = {a.path for a in client.list_artifacts(child.info.run_id, "samples")}
        is_best = child.info.run_id == best_run
        drawn = {"samples/step_0000004.png"} if is_best else set()
        assert grids == {"samples/step_0000004.npy"} | drawn
        arts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert ("progression.gif" in arts) == is_best
        values.append(child.data.metrics["classifier_fd"])
    assert parents[0].data.metrics["best_value"] == pytest.approx(min(values))
    assert study.best_value == pytest.approx(min(values))


def test_animate_grids_writes_one_gif_frame_per_evaluation(tmp_path):
    dark = np.full((4, 1, 8, 8), -1.0)
    light = np.full((4, 1, 8, 8), 1.0)
    mid = np.zeros((4, 1, 8, 8))
    path = animate_grids(
        [dark, light, mid], tmp_path / "anim" / "progress.gif", labels=["a", "b", "c"], nrow=2
    )
    assert path == tmp_path / "anim" / "progress.gif"
    with Image.open(path) as gif:
        assert gif.format == "GIF" and gif.n_frames == 3
        assert gif.info["loop"] == 0 and gif.info["duration"] == 500
        # 2×2 tiles of 8 px with 1-px separators: 19 px, scaled 400 // 19 = 21 times,
        # under a 14-px label strip
        assert gif.size == (19 * 21, 19 * 21 + 14)
        centre = (1 + 4) * 21, 14 + (1 + 4) * 21  # inside the first tile
        expected = [0, 255, 128]
        for i, level in enumerate(expected):
            gif.seek(i)
            assert gif.convert("L").getpixel(centre) == pytest.approx(level, abs=1)
    rgb = animate_grids([np.zeros((3, 3, 6, 6))] * 2, tmp_path / "rgb.gif", scale=2)
    with Image.open(rgb) as gif:
        assert gif.size == (2 * (3 * 7 + 1), 2 * (6 + 2))
    with pytest.raises(ValueError, match="one size"):
        animate_grids([dark, np.zeros((4, 1, 6, 6))], tmp_path / "bad.gif")
    with pytest.raises(ValueError, match="labels"):
        animate_grids([dark], tmp_path / "bad.gif", labels=["a", "b"])
    with pytest.raises(ValueError, match="at least one"):
        animate_grids([], tmp_path / "bad.gif")
