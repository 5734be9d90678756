"""The training loop on tiny budgets: determinism, constraints in place, failures, resume."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient
from torch import Tensor

from pipeline import hookimpl
from pipeline.errors import NonFiniteLossError
from pipeline.experiment.config import load_experiment
from pipeline.host.registry import Registry
from pipeline.training.run import run_training
from pipeline.training.trainer import Trainer
from pipeline.types import Loss
from tests.conftest import EXPERIMENTS, tiny


def experiment(registry, file: str, *extra: str):
    return load_experiment(EXPERIMENTS / file, tiny(file, *extra), registry=registry)


def test_same_file_and_seed_give_identical_losses(registry):
    exp = experiment(registry, "wgan_gp_grid25.yaml", "model.g_width=32", "model.d_width=32")
    a = run_training(exp, tracking=None, progress=False)
    b = run_training(exp, tracking=None, progress=False)
    # exact: the same computation in the same order, in one process on one CPU
    assert a.history["loss/critic"][1] == b.history["loss/critic"][1]
    assert a.history["loss/generator"][1] == b.history["loss/generator"][1]
    assert a.metrics == b.metrics
    other = experiment(
        registry, "wgan_gp_grid25.yaml", "model.g_width=32", "model.d_width=32", "train.seed=1"
    )
    c = run_training(other, tracking=None, progress=False)
    assert c.history["loss/critic"][1] != a.history["loss/critic"][1]


def test_every_step_is_recorded_and_the_penalty_is_positive(registry):
    exp = experiment(registry, "wgan_gp_grid25.yaml", "model.g_width=32", "model.d_width=32")
    result = run_training(exp, tracking=None, progress=False)
    steps, values = result.history["loss/critic"]
    assert steps == list(range(1, 7))
    assert all(math.isfinite(v) for v in values)
    assert all(v > 0 for v in result.history["penalty"][1])
    # W estimate is minus the critic loss without the penalty
    assert "wasserstein_estimate" in result.history
    assert [s for s, _ in result.evaluations] == [3, 6]


def test_weight_clipping_holds_after_training(registry, tmp_path):
    exp = experiment(registry, "wgan_clip_ring8.yaml", "constraint.clip=0.005")
    trainer = Trainer(exp, workdir=tmp_path, progress=False)
    trainer.run()
    for p in trainer.critic.parameters():
        assert p.abs().max().item() <= 0.005 + 1e-7


def test_spectral_norm_wraps_the_critic_and_reports_sigma(registry, tmp_path):
    exp = experiment(registry, "sngan_ring8.yaml")
    trainer = Trainer(exp, workdir=tmp_path, progress=False)
    result = trainer.run()
    sigmas = [k for k in result.history if k.startswith("sigma/")]
    assert len(sigmas) == 4  # three hidden layers and the output layer
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert any(k.endswith("_u") for k in state["critic"])


def test_wgan_warm_up_schedule(registry, tmp_path):
    exp = experiment(registry, "wgan_clip_ring8.yaml", "train.n_critic_warmup=100")
    trainer = Trainer(exp, workdir=tmp_path, progress=False)
    assert [trainer.critic_steps(s) for s in (0, 24, 25, 499, 500, 501)] == [100, 100, 5, 5, 100, 5]


def test_resume_from_checkpoint_continues_identically(registry, tmp_path):
    exp = experiment(registry, "sngan_ring8.yaml")
    full = Trainer(exp, workdir=tmp_path / "a", progress=False)
    (tmp_path / "a").mkdir()
    losses_full = [full.train_step(False)[0][0].item() for _ in range(6)]

    first = Trainer(exp, workdir=tmp_path / "b", progress=False)
    losses_first = [first.train_step(False)[0][0].item() for _ in range(3)]
    state = first.checkpoint_state()
    # something else moves the global RNG in between
    torch.randn(100)
    second = Trainer(exp, workdir=tmp_path / "c", progress=False)
    second.restore(state)
    losses_second = [second.train_step(False)[0][0].item() for _ in range(3)]
    # exact: a resumed run on CPU repeats the same computation in the same order
    assert losses_first + losses_second == losses_full


def test_linear_lr_decay_scales_both_optimizers_and_resumes(registry, tmp_path):
    """train.lr_decay = linear from half of 8 steps: rates 1, 1, 1, 1, 1, ¾, ½, ¼ of the
    configured ones before steps 0..7 (by hand: 1 − (step − 4)/4), for the generator and the
    critic; a run resumed mid-decay repeats the straight run's losses exactly."""
    exp = experiment(
        registry,
        "sngan_ring8.yaml",
        "train.steps=8",
        "train.lr_decay=linear",
        "train.lr_decay_start=0.5",
    )
    trainer = Trainer(exp, workdir=tmp_path / "a", progress=False)
    (tmp_path / "a").mkdir()
    assert [trainer.lr_factor(s) for s in range(8)] == [1, 1, 1, 1, 1, 0.75, 0.5, 0.25]
    g_lr, d_lr = (
        exp.resolved["optimizer"]["generator"]["lr"],
        exp.resolved["optimizer"]["critic"]["lr"],
    )
    seen = []
    for _ in range(8):
        losses = trainer.train_step(False)[0]
        seen.append((trainer.opt_g.param_groups[0]["lr"], trainer.opt_d.param_groups[0]["lr"]))
    assert seen[:5] == [(g_lr, d_lr)] * 5
    assert seen[5:] == [(g_lr * f, d_lr * f) for f in (0.75, 0.5, 0.25)]
    assert torch.isfinite(losses[0])

    straight = Trainer(exp, workdir=tmp_path / "b", progress=False)
    straight_losses = [straight.train_step(False)[0][0].item() for _ in range(8)]
    first = Trainer(exp, workdir=tmp_path / "c", progress=False)
    first_losses = [first.train_step(False)[0][0].item() for _ in range(6)]
    resumed = Trainer(exp, workdir=tmp_path / "d", progress=False)
    resumed.restore(first.checkpoint_state())
    resumed_losses = [resumed.train_step(False)[0][0].item() for _ in range(2)]
    # exact: the same computation in the same order, on CPU
    assert first_losses + resumed_losses == straight_losses
    # without the decay the rates stay as configured and the losses differ
    plain = Trainer(
        experiment(registry, "sngan_ring8.yaml", "train.steps=8"),
        workdir=tmp_path / "e",
        progress=False,
    )
    plain_losses = [plain.train_step(False)[0][0].item() for _ in range(8)]
    assert plain.opt_g.param_groups[0]["lr"] == g_lr
    assert plain_losses[:6] == straight_losses[:6]
    assert plain_losses[7] != straight_losses[7]


def test_the_generator_average_is_what_is_sampled_and_it_resumes(registry, tmp_path):
    """train.g_ema = 0.5: after 3 steps the average is ¼ W1 + ¼ W2 + ½ W3 of the generator's
    weights after each step (the first update copies), sample() draws from it, not from the
    generator, and a resumed run carries it on exactly."""
    from torch.func import functional_call

    exp = experiment(registry, "gan_ring8.yaml", "train.g_ema=0.5", "model.g_batch_norm=true")
    trainer = Trainer(exp, workdir=tmp_path / "a", progress=False)
    (tmp_path / "a").mkdir()
    after = []
    for _ in range(3):
        trainer.train_step(False)
        after.append({k: v.detach().clone() for k, v in trainer.generator.state_dict().items()})
    average = trainer.ema.module.state_dict()
    for name, value in trainer.generator.named_parameters():
        expected = 0.25 * after[0][name] + 0.25 * after[1][name] + 0.5 * after[2][name]
        assert torch.allclose(average[name], expected, atol=1e-6), name
        assert not torch.allclose(average[name], value)
    # batch norm's running statistics are averaged too
    mean = next(k for k in average if k.endswith("running_mean"))
    expected = 0.25 * after[0][mean] + 0.25 * after[1][mean] + 0.5 * after[2][mean]
    assert torch.allclose(average[mean], expected, atol=1e-6)
    noise = trainer.eval_noise[:64]
    with torch.no_grad():
        trainer.ema.module.eval()
        from_average = functional_call(trainer.ema.module, average, (noise,))
    assert torch.equal(trainer.sample(noise), from_average)

    # resumed from the step-3 checkpoint, 3 more steps: the same average as 6 straight
    state = trainer.checkpoint_state()
    resumed = Trainer(exp, workdir=tmp_path / "b", progress=False)
    resumed.restore(state)
    straight = Trainer(exp, workdir=tmp_path / "c", progress=False)
    for _ in range(3):
        resumed.train_step(False)
    for _ in range(6):
        straight.train_step(False)
    for (name, a), b in zip(
        resumed.ema.module.state_dict().items(),
        straight.ema.module.state_dict().values(),
        strict=True,
    ):
        assert torch.equal(a, b), name  # exact: the same computation in the same order, on CPU


def test_an_old_checkpoint_without_the_average_still_resumes(registry):
    from pipeline.training.resume import check_resumable

    exp = experiment(registry, "gan_ring8.yaml")
    old = {k: v for k, v in exp.resolved.items()}
    old["train"] = {k: v for k, v in old["train"].items() if k != "g_ema"}
    check_resumable(exp, {"config": old, "step": 1})  # no error: it trained without one
    averaged = experiment(registry, "gan_ring8.yaml", "train.g_ema=0.999")
    with pytest.raises(Exception, match=r"train\.g_ema \(0\.0 → 0\.999\)"):
        check_resumable(averaged, {"config": old, "step": 1})


class _NaNLoss(Loss):
    name = "nan_after_start"

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        return fake_scores.mean() - real_scores.mean() + torch.log(torch.tensor(-1.0))

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        return -fake_scores.mean()


class _NaNProvider:
    @hookimpl
    def register_losses(self, register):
        register(_NaNLoss)


def test_non_finite_loss_stops_the_run_and_marks_it_failed(shared_store):
    registry = Registry()
    registry.load_entry_points()
    registry.add_module(_NaNProvider(), name="nan-test", package="tests", version="0")
    exp = experiment(
        registry,
        "wgan_gp_grid25.yaml",
        "loss.name=nan_after_start",
        "model.g_width=16",
        "model.d_width=16",
    )
    started: list[str] = []
    with pytest.raises(NonFiniteLossError, match="loss/critic became nan at generator step 1"):
        run_training(exp, tracking=shared_store, progress=False, on_run_started=started.append)
    run = MlflowClient(shared_store.tracking_uri).get_run(started[0])
    assert run.info.status == "FAILED"
    assert "loss/critic became nan" in run.data.tags["failure_reason"]
    assert run.data.tags["pipeline.role"] == "train"  # a plain training's role


def test_checkpoint_is_written_atomically(tmp_path):
    from pipeline.training.checkpoint import save_checkpoint

    path = save_checkpoint(tmp_path / "ck.pt", {"x": torch.ones(3)})
    assert path.exists() and [p.name for p in tmp_path.iterdir()] == ["ck.pt"]

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint(tmp_path / "ck.pt", {"x": Unpicklable()})
    # the old checkpoint is untouched and no temp file is left behind
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    assert torch.load(Path(tmp_path / "ck.pt"))["x"].sum().item() == 3


def test_a_training_next_to_another_in_a_thread_gives_the_same_result_as_alone(registry):
    """Each training owns its RNGs (noise, the gradient penalty's α, real batches), so a
    trial run beside another in a thread (``pipeline tune --n-jobs 2``) reproduces from its
    seed; before, both drew from torch's global RNG and interleaved."""
    import threading

    def gp(seed: int):
        return experiment(
            registry,
            "wgan_gp_grid25.yaml",
            "model.g_width=32",
            "model.d_width=32",
            f"train.seed={seed}",
            "train.steps=8",
            "train.eval_every=8",
        )

    torch.set_num_threads(1)  # the same computation in the same order in every run
    alone = run_training(gp(0), tracking=None, progress=False)
    results: dict[int, object] = {}

    def train(seed: int) -> None:
        results[seed] = run_training(gp(seed), tracking=None, progress=False)

    threads = [threading.Thread(target=train, args=(seed,)) for seed in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # exact: the same computation in the same order, on one thread each
    assert results[0].history["loss/critic"] == alone.history["loss/critic"]
    assert results[0].history["penalty"] == alone.history["penalty"]
    assert results[0].metrics == alone.metrics
    assert results[1].history["loss/critic"] != alone.history["loss/critic"]
