"""Dataset plugins: shapes, determinism, and the exact published definitions."""

from __future__ import annotations

import importlib
import itertools
import math

import pytest
import torch
from sklearn.datasets import load_digits, make_swiss_roll

from pipeline.types import Dataset
from pipeline_plugins.datasets.digits import Digits
from pipeline_plugins.datasets.gaussians8 import Gaussians8
from pipeline_plugins.datasets.gaussians25 import Gaussians25
from pipeline_plugins.datasets.grid25 import Grid25
from pipeline_plugins.datasets.ring8 import Ring8
from pipeline_plugins.datasets.swissroll import SwissRoll

ALL = [Ring8, Grid25, Gaussians8, Gaussians25, SwissRoll, Digits]
MIXTURES = [Ring8, Grid25, Gaussians8, Gaussians25]


@pytest.fixture(scope="module")
def datasets() -> dict[str, Dataset]:
    # built once: gaussians25 and swissroll make a 100k-point pool
    return {cls.name: cls() for cls in ALL}


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_module_registers_its_class(cls):
    module = importlib.import_module(f"pipeline_plugins.datasets.{cls.name}")
    registered = []
    module.register_datasets(registered.append)
    assert registered == [cls]
    assert cls.kind == "dataset"
    assert issubclass(cls, Dataset)
    assert cls.description


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_sample_shape_dtype_device(cls, datasets):
    ds = datasets[cls.name]
    x = ds.sample(256, gen(0))
    assert x.shape == (256, *ds.shape)
    assert x.dtype == torch.float32
    assert x.device.type == "cpu"
    assert torch.isfinite(x).all()
    expected_shape = (1, 8, 8) if cls is Digits else (2,)
    assert ds.shape == expected_shape
    assert ds.is_image == (cls is Digits)


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_sample_is_reproducible_from_the_generator_alone(cls, datasets):
    ds = datasets[cls.name]
    torch.manual_seed(123)
    a = ds.sample(300, gen(7))
    torch.manual_seed(456)  # the global RNG must not matter
    b = ds.sample(300, gen(7))
    c = ds.sample(300, gen(8))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    # the batch is not one point repeated
    assert a.reshape(300, -1).std(dim=0).max() > 0


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_sample_leaves_the_global_rng_alone(cls, datasets):
    ds = datasets[cls.name]
    state = torch.get_rng_state()
    ds.sample(64, gen(1))
    assert torch.equal(state, torch.get_rng_state())


@pytest.mark.parametrize("cls", MIXTURES, ids=lambda c: c.name)
def test_mixture_centers_and_std_are_set(cls, datasets):
    ds = datasets[cls.name]
    assert isinstance(ds.centers, torch.Tensor)
    assert ds.centers.dtype == torch.float32
    assert ds.centers.ndim == 2 and ds.centers.shape[1] == 2
    assert isinstance(ds.std, float) and ds.std > 0


@pytest.mark.parametrize("cls", MIXTURES, ids=lambda c: c.name)
def test_mixture_samples_spread_over_the_modes_with_the_stated_std(cls, datasets):
    ds = datasets[cls.name]
    x = ds.sample(20_000, gen(3)).double()
    c = ds.centers.double()
    nearest = torch.cdist(x, c).argmin(dim=1)
    counts = torch.bincount(nearest, minlength=c.shape[0]).double()
    k = c.shape[0]
    # uniform mode choice: every count within 6 binomial s.d. of n/k
    sd = math.sqrt(20_000 * (1 / k) * (1 - 1 / k))
    assert (counts - 20_000 / k).abs().max() < 6 * sd
    residual = x - c[nearest]
    assert residual.std().item() == pytest.approx(ds.std, rel=0.03)


def test_ring8_has_eight_distinct_centres_on_the_unit_circle(datasets):
    c = datasets["ring8"].centers.double()
    assert c.shape == (8, 2)
    assert torch.allclose(c.norm(dim=1), torch.ones(8, dtype=torch.float64), atol=1e-6)
    pairwise = torch.cdist(c, c) + torch.eye(8, dtype=torch.float64) * 10
    assert pairwise.min() > 0.5  # linspace(0, 2π, 8) would repeat centre 0 (distance 0)
    angles = 2 * math.pi * torch.arange(8, dtype=torch.float64) / 8
    expected = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert torch.allclose(c, expected, atol=1e-6)
    assert datasets["ring8"].std == 0.01


def test_grid25_centres_are_the_grid_points(datasets):
    ds = datasets["grid25"]
    got = {tuple(round(v, 6) for v in row) for row in ds.centers.tolist()}
    expected = {(float(x), float(y)) for x, y in itertools.product([-4, -2, 0, 2, 4], repeat=2)}
    assert ds.centers.shape == (25, 2)
    assert got == expected
    assert ds.std == 0.05


def test_gaussians8_follows_gan_toy_scale(datasets):
    ds = datasets["gaussians8"]
    r = 1 / math.sqrt(2)
    unit = torch.tensor(
        [(1, 0), (-1, 0), (0, 1), (0, -1), (r, r), (r, -r), (-r, r), (-r, -r)],
        dtype=torch.float64,
    )
    assert torch.allclose(ds.centers.double(), 2 * unit / 1.414, atol=1e-6)
    assert torch.allclose(
        ds.centers.double().norm(dim=1), torch.full((8,), 2 / 1.414, dtype=torch.float64)
    )
    assert ds.std == pytest.approx(0.02 / 1.414, rel=1e-12)


def test_gaussians25_is_a_fixed_balanced_pool(datasets):
    ds = datasets["gaussians25"]
    grid = [(2 * i / 2.828, 2 * j / 2.828) for i, j in itertools.product(range(-2, 3), repeat=2)]
    got = {tuple(round(v, 5) for v in row) for row in ds.centers.tolist()}
    assert got == {(round(x, 5), round(y, 5)) for x, y in grid}
    assert ds.std == pytest.approx(0.05 / 2.828, rel=1e-12)
    assert ds.pool.shape == (100_000, 2)
    assert ds.pool.dtype == torch.float32
    # 4,000 points per centre, as gan_toy.py builds it
    nearest = torch.cdist(ds.pool, ds.centers).argmin(dim=1)
    assert torch.equal(torch.bincount(nearest, minlength=25), torch.full((25,), 4000))
    # every sample is a row of the pool
    x = ds.sample(50, gen(0))
    matches = (x[:, None, :] == ds.pool[None, :, :]).all(dim=-1).any(dim=1)
    assert matches.all()
    # the pool is fixed by its seed, and another seed makes another pool
    assert torch.equal(Gaussians25().pool, ds.pool)
    assert not torch.equal(Gaussians25(Gaussians25.Settings(seed=1)).pool, ds.pool)


def test_swissroll_matches_sklearn(datasets):
    ds = datasets["swissroll"]
    assert ds.centers is None and ds.std is None
    points, _ = make_swiss_roll(n_samples=100_000, noise=0.25, random_state=0)
    expected = torch.from_numpy(points[:, [0, 2]] / 7.5).float()
    assert torch.equal(ds.pool, expected)
    other = SwissRoll(SwissRoll.Settings(seed=1))
    assert not torch.equal(other.pool, ds.pool)


def test_digits_scaled_images_and_labels(datasets):
    ds = datasets["digits"]
    assert ds.centers is None and ds.std is None
    x = ds.sample(500, gen(0))
    assert x.shape == (500, 1, 8, 8)
    assert x.min() >= -1 and x.max() <= 1
    bunch = load_digits()
    assert ds.images.shape == (1797, 1, 8, 8)
    expected = torch.from_numpy(bunch.data).float().reshape(-1, 1, 8, 8) / 8 - 1
    assert torch.equal(ds.images, expected)
    assert ds.images.min() == -1 and ds.images.max() == 1
    assert ds.labels.shape == (1797,) and ds.labels.dtype == torch.int64
    assert torch.equal(ds.labels, torch.from_numpy(bunch.target).long())
    assert set(ds.labels.tolist()) == set(range(10))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.name)
def test_settings_refuse_unknown_keys(cls):
    with pytest.raises(ValueError):
        cls.Settings(not_a_setting=1)
