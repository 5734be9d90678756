"""PacGAN's packing (Lin et al. 2018) as ``model.pack`` of the mlp model: shapes, grouping,
the gradient penalty per packed input, refusals, and pack 1 as the unpacked critic."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner
from torch import nn

from pipeline.cli.commands import main
from pipeline.errors import ConfigError
from pipeline.experiment.config import load_experiment
from pipeline.training.run import run_training
from pipeline.training.step import SingleNets
from pipeline.training.trainer import Trainer
from pipeline_plugins.constraints.gradient_penalty import gradient_penalty
from pipeline_plugins.models.mlp_nets import MLPCritic
from tests.conftest import EXPERIMENTS, tiny

SMALL_PACKED = ("model.g_width=16", "model.d_width=16", "train.batch_size=32")


def experiment(registry, file: str, *extra: str):
    return load_experiment(EXPERIMENTS / file, tiny(file, *SMALL_PACKED, *extra), registry=registry)


def test_a_packed_critic_scores_each_run_of_m_samples_once():
    critic = MLPCritic((2,), width=8, depth=2, activation="relu", pack=4)
    assert critic.net[0].in_features == 8  # 4 samples of 2 coordinates
    x = torch.randn(100, 2)
    scores = critic(x)
    assert scores.shape == (25,)
    # the third score is the critic of samples 8..11 concatenated, in order
    by_hand = critic.net(x[8:12].reshape(1, 8)).squeeze(-1)
    # a batched matmul and a one-row one may differ in the last bits
    assert torch.allclose(scores[2:3], by_hand, atol=1e-6)
    with pytest.raises(ValueError, match=r"model\.pack.*packs of 4.*batch of 10"):
        critic(torch.randn(10, 2))


def test_pack_1_is_the_unpacked_critic_weight_for_weight():
    """The same seed builds the same weights as a plain 3-layer ReLU net built by hand (the
    critic before packing existed), scores the same, and keeps the checkpoint's keys."""
    torch.manual_seed(3)
    critic = MLPCritic((2,), width=8, depth=2, activation="relu", pack=1)
    torch.manual_seed(3)
    by_hand = nn.Sequential(nn.Linear(2, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 1))
    assert [k.removeprefix("net.") for k in critic.state_dict()] == list(by_hand.state_dict())
    for a, b in zip(critic.state_dict().values(), by_hand.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x = torch.randn(50, 2)
    assert torch.equal(critic(x), by_hand(x).squeeze(-1))


def test_pack_1_trains_exactly_as_without_the_key(registry):
    plain = run_training(experiment(registry, "sngan_ring8.yaml"), tracking=None, progress=False)
    packed1 = run_training(
        experiment(registry, "sngan_ring8.yaml", "model.pack=1"), tracking=None, progress=False
    )
    # exact: the same computation in the same order, in one process on one CPU
    assert packed1.history["loss/critic"] == plain.history["loss/critic"]
    assert packed1.metrics == plain.metrics


def test_real_is_packed_with_real_and_fake_with_fake(registry, tmp_path):
    """The step scores real and fake in one critic pass: the first half of the scores is the
    real packs', the second the fake packs' (no pack mixes real and fake samples)."""
    trainer = Trainer(
        experiment(registry, "sngan_ring8.yaml", "model.pack=4"), workdir=tmp_path, progress=False
    )
    assert trainer.single_pass  # both batches in one critic pass
    nets = SingleNets(
        generator=trainer.generator,
        critic=trainer.critic,
        loss=trainer.loss,
        constraint=trainer.constraint,
        opt_g=trainer.opt_g,
        opt_d=trainer.opt_d,
        ema=None,
        single_pass=True,
        device=trainer.device,
        rounds=1,
        draw_real=trainer.real_batch,
        draw_noise=trainer.noise_batch,
    )
    real, fake = torch.randn(32, 2), torch.randn(32, 2) + 5
    trainer.critic.eval()  # spectral norm's power iteration would move σ between calls
    with torch.no_grad():
        real_scores, fake_scores = nets.score(real, fake)
        assert torch.allclose(real_scores, trainer.critic(real), atol=1e-6)
        assert torch.allclose(fake_scores, trainer.critic(fake), atol=1e-6)
    assert real_scores.shape == fake_scores.shape == (8,)


def test_the_penalty_takes_one_norm_per_packed_input():
    """A packed linear critic D(x₁..x₄) = w·[x₁ … x₄] has gradient w with respect to each
    packed input wherever it is evaluated: the penalty is exactly (‖w‖ − 1)², not the mean
    over samples of (‖w_block‖ − 1)²."""
    critic = MLPCritic((2,), width=8, depth=0, activation="relu", pack=4)
    with torch.no_grad():
        critic.net[0].weight.copy_(torch.tensor([[0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]]))
    w = critic.net[0].weight.flatten()
    expected = (w.norm() - 1) ** 2
    value = gradient_penalty(critic, torch.randn(16, 2), torch.randn(16, 2))
    assert torch.allclose(value, expected, atol=1e-6)
    per_sample = ((w.reshape(4, 2).norm(dim=1) - 1) ** 2).mean()
    assert not torch.allclose(value, per_sample, atol=1e-3)


@pytest.mark.parametrize(
    ("file", "extra"),
    [
        ("wgan_gp_grid25.yaml", ()),
        ("sngan_ring8.yaml", ()),
        ("wgan_clip_ring8.yaml", ()),
        ("gan_ring8.yaml", ("loss.name=least_squares",)),
    ],
)
def test_every_constraint_trains_with_packing(registry, file, extra):
    result = run_training(
        experiment(registry, file, "model.pack=2", *extra), tracking=None, progress=False
    )
    steps, losses = result.history["loss/critic"]
    assert steps == list(range(1, 7))
    assert all(torch.isfinite(torch.tensor(losses)))
    if "penalty" in result.history:
        assert all(v > 0 for v in result.history["penalty"][1])
    assert set(result.metrics) >= {"modes", "hq_fraction"}


def test_a_batch_that_the_pack_does_not_divide_is_refused(registry):
    with pytest.raises(ConfigError) as info:
        experiment(registry, "sngan_ring8.yaml", "model.pack=3")  # batch 32
    assert info.value.field == "train.batch_size"
    assert "multiple of model.pack (3)" in str(info.value)


def test_the_cli_refuses_it_in_one_line_and_creates_no_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main,
        [
            "train",
            str(EXPERIMENTS / "sngan_ring8.yaml"),
            "--no-progress",
            "-o",
            "model.pack=3",
            "-o",
            "train.batch_size=100",
        ],
    )
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: train.batch_size: must be a multiple")
    assert not (tmp_path / "mlartifacts").exists()
