"""Population mode (issue 13): K members trained as one stacked model give, member for
member, what K separate trainings of the same seeds give; plugins without a population
form are refused by name.

Tolerance: the stacked nets run batched matmuls (``baddbmm``) and the population
optimizers torch's single-tensor math, where a single training runs ``addmm`` and (on CPU)
fused Adam, so the same values come out of a different order of float operations.
Measured here over 6 steps of 16-wide nets: ≤ 2e-5 relative (of max(1, |value|)) for
every loss, penalty, gradient norm and metric, except with spectral norm + Adam (4e-4):
Adam's step m/√v does not depend on the gradient's scale, so a gradient entry that is
zero up to rounding (1e-10) moves by up to ±lr either way. Hence :data:`TOL` and
:data:`TOL_SN`; a wrong draw order, a missed mask or a wrong per-member value moves the
losses by 1e-2 or more at once (checked by ``test_a_wrong_seed_is_caught``).
"""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from pipeline import hookimpl
from pipeline.errors import ConfigError
from pipeline.experiment.config import load_experiment
from pipeline.host.registry import Registry
from pipeline.training.run import run_training
from pipeline.tuning.population.loop import MemberHooks, PopulationLoop
from pipeline.tuning.population.trainer import PopulationTrainer
from pipeline.types import Constraint, Loss
from tests.conftest import EXPERIMENTS

pytestmark = pytest.mark.usefixtures("one_thread")

TOL = 1e-4
TOL_SN = 2e-3
#: optimizer states in a member's checkpoint (see test_a_members_checkpoint_…)
TOL_STATE = 2e-3
BASE = (
    "train.steps=6",
    "train.eval_every=3",
    "train.log_every=2",
    "train.eval_samples=300",
    "model.g_width=16",
    "model.d_width=16",
    "train.batch_size=32",
)


def experiments(registry, file: str, *variants: tuple[str, ...]):
    return [load_experiment(EXPERIMENTS / file, [*BASE, *v], registry=registry) for v in variants]


class _Results(MemberHooks):
    def __init__(self) -> None:
        self.results: dict[int, object] = {}
        self.errors: dict[int, BaseException] = {}

    def on_end(self, k, member, result, error) -> None:
        if error is not None:
            self.errors[k] = error
        else:
            self.results[k] = result


def train_population(exps) -> _Results:
    hooks = _Results()
    PopulationLoop(PopulationTrainer(exps, device="cpu"), hooks).run()
    return hooks


def worst_difference(single, member) -> float:
    """Largest relative difference of any per-step value or metric; every key and step of
    the single run must be in the member's record, and no other."""
    assert set(member.history) == set(single.history)
    worst = 0.0
    for key, (steps, values) in single.history.items():
        member_steps, member_values = member.history[key]
        assert member_steps == steps, key
        for a, b in zip(values, member_values, strict=True):
            worst = max(worst, abs(a - b) / max(1.0, abs(a)))
    assert [s for s, _ in member.evaluations] == [s for s, _ in single.evaluations]
    for (_, want), (_, got) in zip(single.evaluations, member.evaluations, strict=True):
        assert set(got) == set(want)
        for key, value in want.items():
            worst = max(worst, abs(value - got[key]) / max(1.0, abs(value)))
    return worst


CASES = {
    # constraint gradient_penalty, optimizer adam; per-member λ (0 included), n_critic, lr
    "gradient_penalty+adam": (
        "wgan_gp_grid25.yaml",
        [(), ("train.seed=1", "constraint.weight=0.5", "train.n_critic=2",
              "train.n_critic_warmup=3"),
         ("train.seed=2", "optimizer.critic.lr=0.001", "constraint.weight=0")],
        TOL,
    ),
    # weight_clipping, rmsprop: per-member clip, lr, momentum, weight decay
    "weight_clipping+rmsprop": (
        "wgan_clip_ring8.yaml",
        [("model.g_batch_norm=false",),
         ("model.g_batch_norm=false", "train.seed=1", "constraint.clip=0.05",
          "train.n_critic=2", "optimizer.critic.lr=0.001"),
         ("model.g_batch_norm=false", "train.seed=3", "optimizer.critic.momentum=0.5",
          "optimizer.generator.weight_decay=0.01")],
        TOL,
    ),
    # spectral_norm (per-member u, v), adam with per-member betas
    "spectral_norm+adam": (
        "sngan_ring8.yaml",
        [("model.g_batch_norm=false",),
         ("model.g_batch_norm=false", "train.seed=1", "train.n_critic=3",
          "optimizer.critic.betas=[0.0, 0.9]")],
        TOL_SN,
    ),
    # constraints: spectral norm + gradient penalty, bce loss; λ = 0 for one member
    "stack+bce": (
        "sngan_gp_grid25.yaml",
        [(), ("train.seed=1", "constraints.gradient_penalty.weight=0", "train.n_critic=3"),
         ("train.seed=5", "constraints.gradient_penalty.weight=10")],
        TOL_SN,
    ),
    # none, sgd with (Nesterov) momentum
    "none+sgd": (
        "gan_ring8.yaml",
        [("model.g_batch_norm=false", "optimizer.critic={name: sgd, lr: 0.01}",
          "optimizer.generator={name: sgd, lr: 0.01}"),
         ("model.g_batch_norm=false", "train.seed=1",
          "optimizer.critic={name: sgd, lr: 0.01, momentum: 0.9, nesterov: true}",
          "optimizer.generator={name: sgd, lr: 0.02, momentum: 0.5}")],
        TOL,
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(CASES))
def test_each_member_gives_what_its_single_training_gives(registry, case):
    file, variants, tol = CASES[case]
    exps = experiments(registry, file, *variants)
    singles = [run_training(e, tracking=None, progress=False) for e in exps]
    population = train_population(exps)
    assert not population.errors
    for k, single in enumerate(singles):
        assert worst_difference(single, population.results[k]) <= tol, (case, k)


def test_a_wrong_seed_is_caught(registry):
    """The comparison can fail: another seed differs far beyond the tolerance."""
    (one,) = experiments(registry, "wgan_gp_grid25.yaml", ())
    (other,) = experiments(registry, "wgan_gp_grid25.yaml", ("train.seed=1",))
    single = run_training(one, tracking=None, progress=False)
    population = train_population([other])
    assert worst_difference(single, population.results[0]) > 100 * TOL


def test_a_slot_refilled_midway_reproduces_its_single_training(registry):
    """A member that joins a running population (the slot of one that ended) trains as its
    own single training would: its nets, optimizer state and RNGs start fresh."""
    short, long_, late = experiments(
        registry,
        "wgan_gp_grid25.yaml",
        ("train.steps=2", "train.eval_every=2"),
        ("train.seed=1",),
        ("train.seed=2", "constraint.weight=1.0", "train.n_critic=3"),
    )
    want = run_training(late, tracking=None, progress=False)
    trainer = PopulationTrainer([short, long_], device="cpu")
    got: dict[int, object] = {}

    class Refill(_Results):
        def on_end(self, k, member, result, error) -> None:
            got.setdefault(member.exp.train.seed, result)
            if member.exp.train.seed == 0:  # the short one ends at step 2
                trainer.set_member(k, late)

    PopulationLoop(trainer, Refill()).run()
    assert worst_difference(want, got[2]) <= TOL
    assert worst_difference(run_training(long_, tracking=None, progress=False), got[1]) <= TOL


def test_a_member_going_non_finite_fails_alone(registry):
    sgd = "optimizer.critic={name: sgd, lr: %s}"
    calm, wild = experiments(
        registry, "wgan_gp_grid25.yaml", (sgd % "0.01",), (sgd % "1.0e+30", "train.seed=1")
    )
    population = train_population([calm, wild])
    assert list(population.errors) == [1]
    assert "loss/critic became nan at generator step 1" in str(population.errors[1])
    single = run_training(calm, tracking=None, progress=False)
    assert worst_difference(single, population.results[0]) <= TOL


class _Relativistic(Loss):
    """Relativistic average BCE (Jolicoeur-Martineau 2019): the generator term needs the
    real scores, so the population also scores a real batch in the generator step."""

    name = "relativistic_average"
    needs_real_scores = True

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        soft = torch.nn.functional.softplus
        return (
            soft(-(real_scores - fake_scores.mean())).mean()
            + soft(fake_scores - real_scores.mean()).mean()
        )

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        assert real_scores is not None
        return self.critic_loss(fake_scores, real_scores)


def test_a_loss_that_needs_real_scores(extra_registry):
    exps = experiments(
        extra_registry, "wgan_gp_grid25.yaml",
        ("loss={name: relativistic_average}",),
        ("loss={name: relativistic_average}", "train.seed=1", "train.n_critic=2"),
    )  # fmt: skip
    singles = [run_training(e, tracking=None, progress=False) for e in exps]
    population = train_population(exps)
    for k, single in enumerate(singles):
        assert worst_difference(single, population.results[k]) <= TOL


class _NoForm(Constraint):
    name = "no_population_form"


class _ItemLoss(Loss):
    """Reads a score to the host: cannot run under vmap."""

    name = "item_loss"

    def critic_loss(self, real_scores: Tensor, fake_scores: Tensor) -> Tensor:
        scale = 2.0 if real_scores.mean().item() > 0 else 1.0
        return scale * (fake_scores.mean() - real_scores.mean())

    def generator_loss(self, fake_scores: Tensor, real_scores: Tensor | None) -> Tensor:
        return -fake_scores.mean()


class _Provider:
    @hookimpl
    def register_constraints(self, register):
        register(_NoForm)

    @hookimpl
    def register_losses(self, register):
        register(_ItemLoss)
        register(_Relativistic)


@pytest.fixture(scope="module")
def extra_registry():
    registry = Registry()
    registry.load_entry_points()
    registry.add_module(_Provider(), name="population-test", package="tests", version="0")
    return registry


@pytest.mark.parametrize(
    ("override", "field", "words"),
    [
        ("constraint={name: no_population_form}", "constraint", "no_population_form"),
        ("loss={name: item_loss}", "loss", "item_loss"),
        ("model.g_batch_norm=true", "model.g_batch_norm", "batch norm"),
        ("train.g_ema=0.999", "train.g_ema", "generator average"),
        ("train.lr_decay=linear", "train.lr_decay", "learning-rate decay"),
        ("model.pack=2", "model.pack", "PacGAN packing"),
    ],
)
def test_a_plugin_without_population_form_is_refused_by_name(
    extra_registry, override, field, words
):
    (exp,) = experiments(extra_registry, "wgan_gp_grid25.yaml", (override,))
    with pytest.raises(ConfigError) as info:
        PopulationTrainer([exp], device="cpu")
    assert info.value.field == field
    assert words in str(info.value)


def test_the_dcgan_model_is_refused_by_name(registry):
    exp = load_experiment(
        EXPERIMENTS / "gan_digits.yaml", ["train.steps=2", "train.eval_samples=50"],
        registry=registry,
    )  # fmt: skip
    with pytest.raises(ConfigError, match="'dcgan' has no population form"):
        PopulationTrainer([exp], device="cpu")


def test_members_of_another_structure_cannot_share_a_stack(registry):
    a, b = experiments(registry, "wgan_gp_grid25.yaml", (), ("model.d_width=8",))
    trainer = PopulationTrainer([a], device="cpu")
    with pytest.raises(ConfigError, match="another structure"):
        trainer.set_member(0, b)


def test_weight_clipping_holds_per_member(registry):
    exps = experiments(
        registry, "wgan_clip_ring8.yaml",
        ("model.g_batch_norm=false", "constraint.clip=0.005"),
        ("model.g_batch_norm=false", "constraint.clip=0.05", "train.seed=1"),
    )  # fmt: skip
    trainer = PopulationTrainer(exps, device="cpu")
    for _ in range(3):
        trainer.train_step()
    for k, clip in enumerate((0.005, 0.05)):
        biggest = max(p[k].abs().max().item() for p in trainer.D.parameters())
        assert biggest <= clip + 1e-7
    assert max(p[1].abs().max().item() for p in trainer.D.parameters()) > 0.005
    assert torch.isfinite(trainer.samples()).all()


CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (benchmarks/gpu.sh)")


@CUDA
@pytest.mark.parametrize("case", ["gradient_penalty+adam", "stack+bce"])
def test_cuda_members_give_their_single_cuda_trainings(registry, case):
    """On the GPU as on the CPU (each member's training generator lives on the device)."""
    file, variants, tol = CASES[case]
    exps = experiments(registry, file, *[(*v, "train.device=cuda") for v in variants])
    singles = [run_training(e, tracking=None, progress=False) for e in exps]
    population = train_population(exps)
    assert not population.errors
    # TF32 matmuls may differ between the batched and the single kernels: a looser bound
    for k, single in enumerate(singles):
        assert worst_difference(single, population.results[k]) <= 10 * tol, (case, k)


@CUDA
def test_cuda_population_of_128_trains_and_stays_finite(registry):
    exps = [
        load_experiment(
            EXPERIMENTS / "wgan_gp_grid25.yaml",
            [*BASE, "train.device=cuda", f"train.seed={k}", f"constraint.weight={0.01 * (k + 1)}"],
            registry=registry,
        )
        for k in range(128)
    ]
    population = train_population(exps)
    assert not population.errors and len(population.results) == 128


def _close(a, b, tol: float, where: str) -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), where
        for key in a:
            _close(a[key], b[key], tol, f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, tol, f"{where}[{i}]")
    elif isinstance(a, Tensor):
        assert a.shape == b.shape, where
        assert torch.allclose(a.float(), b.float(), rtol=tol, atol=tol), where
    else:
        assert a == b, where


# not weight_clipping+rmsprop: its clipped critic's gradients are ~1e-8, near RMSProp's
# eps, so the momentum buffer's g/(√v + eps) turns rounding into differences of 1e-1
# (the parameters still agree, and the optimizer math is checked on its own below)
@pytest.mark.parametrize("case", ["gradient_penalty+adam", "none+sgd", "spectral_norm+adam"])
def test_a_members_checkpoint_is_its_single_trainings(registry, tmp_path, case):
    """Nets, spectral norm's u and v, optimizer state and RNG states, as the single
    training of the member's seed leaves them (what ``--resume`` continues from)."""
    from pipeline.training.trainer import Trainer

    file, variants, tol = CASES[case]
    exps = experiments(registry, file, *variants)
    members: dict[int, object] = {}
    trainer = PopulationTrainer(exps, device="cpu")

    class Keep(_Results):
        def on_end(self, k, member, result, error) -> None:
            members[k] = trainer.store_member(k, member).checkpoint_state()

    PopulationLoop(trainer, Keep()).run()
    for k, exp in enumerate(exps):
        single = Trainer(exp, workdir=tmp_path, progress=False, write_artifacts=False)
        single.run()
        want, got = single.checkpoint_state(), members[k]
        for key in ("generator", "critic"):
            _close(want[key], got[key], tol, key)
        # optimizer states hold scale-free ratios (Adam's m/√v): an entry whose gradient is
        # zero up to rounding differs more there
        for key in ("optimizer_generator", "optimizer_critic"):
            _close(want[key], got[key], max(tol, TOL_STATE), key)
        assert got["step"] == want["step"] == exp.train.steps
        for key in ("data", "train"):
            assert torch.equal(got["rng"][key], want["rng"][key])
