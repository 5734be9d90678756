"""Image metrics in the features of a classifier trained on the real digits.

The classifier is trained once, in a fresh process, into the session's cache folder under
pytest's temporary directory (``$GAN_PIPELINE_CLASSIFIER_CACHE``, the ``classifier_cache``
fixture), never into ``~/.cache``; this process then loads it from there.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from pipeline.types import Dataset, Metric
from pipeline_plugins.datasets.digits import Digits
from pipeline_plugins.datasets.ring8 import Ring8
from pipeline_plugins.metrics import classifier_training, feature_net
from pipeline_plugins.metrics.class_coverage import ClassCoverage
from pipeline_plugins.metrics.class_kl import ClassKL, kl_to_uniform
from pipeline_plugins.metrics.classifier_accuracy import ClassifierAccuracy
from pipeline_plugins.metrics.classifier_cache import cache_key
from pipeline_plugins.metrics.classifier_fd import ClassifierFD
from pipeline_plugins.metrics.classifier_store import classifier_for
from pipeline_plugins.metrics.classifier_training import Recipe, accuracy
from pipeline_plugins.metrics.knn_manifold import (
    distances,
    inside_manifold,
    knn_radii,
    manifold_share,
)
from pipeline_plugins.metrics.labelled_images import labelled_split
from pipeline_plugins.metrics.precision import Precision
from pipeline_plugins.metrics.recall import Recall

pytestmark = pytest.mark.usefixtures("one_thread")

IMAGE_METRICS = [
    (ClassifierFD, "classifier_fd", "minimize"),
    (ClassCoverage, "class_coverage", "maximize"),
    (ClassKL, "class_kl", "minimize"),
    (Precision, "precision", "maximize"),
    (Recall, "recall", "maximize"),
    (ClassifierAccuracy, "classifier_accuracy", "maximize"),
]

#: a fresh process gets the digits classifier (with two torch threads and a seeded global
#: RNG around the call), prints what it reports as JSON, and saves its held-out logits
FRESH_PROCESS = """
import json, sys
import torch
from pipeline_plugins.datasets.digits import Digits
from pipeline_plugins.metrics.classifier_store import classifier_for

torch.manual_seed(1234)
torch.set_num_threads(2)
rng = torch.get_rng_state()
clf = classifier_for(Digits())
report = {
    "rng_unchanged": torch.equal(rng, torch.get_rng_state()),
    "threads_restored": torch.get_num_threads() == 2,
}
torch.set_num_threads(1)
torch.save(clf.net(Digits().heldout_images).detach(), sys.argv[1])
for name in ("key", "loaded_from_cache", "heldout_accuracy", "train_seconds", "n_train",
             "n_heldout", "num_classes"):
    report[name] = getattr(clf, name)
report["path"] = str(clf.path)
print(json.dumps(report))
"""


def in_fresh_process(folder: Path) -> tuple[dict, torch.Tensor]:
    """What :data:`FRESH_PROCESS` reports, and its held-out logits (kept in ``folder``)."""
    logits = folder / "heldout_logits.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", FRESH_PROCESS, str(logits)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.splitlines()[-1]), torch.load(logits)


@pytest.fixture(scope="module")
def digits() -> Digits:
    return Digits()


@pytest.fixture(scope="module")
def trained(classifier_cache, tmp_path_factory) -> tuple[dict, torch.Tensor]:
    """The digits classifier trained from an empty cache in a fresh process: its report and
    held-out logits."""
    for stale in classifier_cache.glob("*.pt"):
        stale.unlink()
    return in_fresh_process(tmp_path_factory.mktemp("trained"))


@pytest.fixture(scope="module")
def clf(trained, digits):
    """The same classifier in this process: loaded from the file the fresh process wrote
    (or the one this process already holds: the same key, the same weights)."""
    return classifier_for(digits)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize(("cls", "name", "direction"), IMAGE_METRICS)
def test_metric_plugins_register_and_apply_to_labelled_images_only(cls, name, direction, digits):
    module = importlib.import_module(f"pipeline_plugins.metrics.{name}")
    registered = []
    module.register_metrics(registered.append)
    assert registered == [cls]
    assert issubclass(cls, Metric) and cls.name == name and cls.direction == direction
    assert cls().applies_to(digits)
    assert not cls().applies_to(Ring8())


class LooksLikeImages(Dataset):
    """Images and labels as attributes, but not an ImageDataset: no contract, no metrics."""

    name = "looks_like_images"
    shape = (1, 8, 8)

    def __init__(self, digits: Digits) -> None:
        super().__init__()
        self.images, self.labels = digits.images, digits.labels

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self.images[torch.randint(len(self.images), (n,), generator=generator)]


@pytest.mark.parametrize("cls", [cls for cls, _, _ in IMAGE_METRICS])
def test_the_metrics_apply_by_the_image_dataset_contract_not_by_attributes(cls, digits):
    assert not cls().applies_to(LooksLikeImages(digits))


def test_classifier_trains_reaches_97_percent_and_leaves_the_rng_alone(trained, classifier_cache):
    report, _ = trained
    assert not report["loaded_from_cache"]
    assert report["heldout_accuracy"] >= 0.97  # the bar; 359 held-out digits
    assert report["n_train"] == 1438 and report["n_heldout"] == 359
    assert report["num_classes"] == 10 and report["train_seconds"] > 0
    path = Path(report["path"])
    assert path.parent == classifier_cache and path.is_file()
    assert path.name == f"{report['key']}.pt"
    assert report["rng_unchanged"] and report["threads_restored"]


def test_the_accuracy_is_recomputed_from_the_cached_weights(trained, clf, digits):
    report, _ = trained
    assert clf.key == report["key"]
    assert accuracy(clf.net, digits.heldout_images, digits.heldout_labels) == pytest.approx(
        report["heldout_accuracy"]
    )


def test_the_same_process_keeps_one_classifier(clf):
    assert classifier_for(Digits()) is clf  # another Digits object: found by its key


def test_a_fresh_process_loads_the_disk_cache(trained, tmp_path):
    report, logits = trained
    path = Path(report["path"])
    mtime = path.stat().st_mtime_ns
    again, again_logits = in_fresh_process(tmp_path)
    assert again["loaded_from_cache"] and again["key"] == report["key"]
    assert path.stat().st_mtime_ns == mtime  # read, not trained and written again
    # loading must not move the global RNG either: a GAN run that evaluates would then
    # train differently with and without a cached classifier
    assert again["rng_unchanged"] and again["threads_restored"]
    assert again["heldout_accuracy"] == report["heldout_accuracy"]
    assert again["train_seconds"] == report["train_seconds"]  # the record, not a new time
    assert torch.equal(again_logits, logits)


def test_the_cache_key_covers_the_data_and_the_recipe(clf, digits):
    split = labelled_split(digits)
    key = cache_key(split, Recipe())
    assert key == clf.key
    split.train_images = split.train_images.clone()
    split.train_images[0, 0, 0, 0] += 0.5
    assert cache_key(split, Recipe()) != key
    assert cache_key(labelled_split(digits), Recipe(seed=1)) != key


@pytest.mark.parametrize("module", [feature_net, classifier_training])
def test_the_cache_key_covers_the_code_of_the_network_and_its_training(
    module, digits, tmp_path, monkeypatch
):
    split = labelled_split(digits)
    key = cache_key(split, Recipe())
    edited = tmp_path / Path(module.__file__).name
    edited.write_bytes(Path(module.__file__).read_bytes() + b"\n# edited\n")
    monkeypatch.setattr(module, "__file__", str(edited))
    assert cache_key(split, Recipe()) != key


def all_metrics(samples, dataset) -> dict[str, float]:
    return {cls.name: cls().compute(samples, dataset) for cls, _, _ in IMAGE_METRICS}


def test_real_heldout_digits_against_the_training_digits(clf, digits):
    held = all_metrics(digits.heldout_images, digits)  # 359 images never trained on
    # the finite-sample floor: 359 of the training images themselves
    floor_fd = ClassifierFD().compute(digits.train_images[:359], digits)
    noise = torch.rand(359, 1, 8, 8, generator=gen(4)) * 2 - 1
    noise_fd = ClassifierFD().compute(noise, digits)
    # held-out digits are as close as a same-size sample of the training set, up to 2×
    # (measured: 17.4 vs 14.9), and far from uniform noise (measured: 964, 55×)
    assert 0 < held["classifier_fd"] < 2 * floor_fd
    assert noise_fd > 20 * held["classifier_fd"]
    assert held["class_coverage"] == 10
    # 359 samples over 10 near-balanced classes: KL of the observed histogram is small
    # (measured 0.014; one class at 2× its share would already give ~0.05)
    assert held["class_kl"] < 0.05
    # k = 3 manifolds of two samples of one distribution hold most of each other
    # (measured: precision 0.91, recall 0.89); uniform noise lies outside (measured 0, 0)
    assert held["precision"] > 0.8 and held["recall"] > 0.8
    assert held["classifier_accuracy"] == clf.heldout_accuracy
    assert Precision().compute(noise, digits) < 0.05
    assert Recall().compute(noise, digits) < 0.05


def test_a_generator_stuck_on_one_image_covers_one_class(clf, digits):
    stuck = digits.train_images[7:8].expand(500, 1, 8, 8).clone()
    values = all_metrics(stuck, digits)
    assert values["class_coverage"] == 1
    assert values["class_kl"] == pytest.approx(math.log(10), abs=1e-12)
    assert values["recall"] < 0.05  # one point covers almost none of the real digits
    real_fd = ClassifierFD().compute(digits.sample(500, gen(8)), digits)
    assert values["classifier_fd"] > 20 * real_fd


def test_classifier_fd_matches_a_direct_computation(clf, digits):
    """torchmetrics' Fréchet distance (eigenvalues of Σ_r Σ_g) equals the same formula computed
    through the symmetric matrix Σ_r^½ Σ_g Σ_r^½, which has the same trace of square root."""
    x = digits.sample(400, gen(5)) * 0.8  # a distorted distribution: a non-trivial value
    real = clf.reference()[0].double().numpy()
    fake = clf.features_and_logits(x)[0].double().numpy()
    mu_r, mu_f = real.mean(0), fake.mean(0)
    cov_r, cov_f = np.cov(real, rowvar=False), np.cov(fake, rowvar=False)
    w, v = np.linalg.eigh(cov_r)
    half = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    trace_root = np.sqrt(np.clip(np.linalg.eigvalsh(half @ cov_f @ half), 0, None)).sum()
    expected = ((mu_r - mu_f) ** 2).sum() + np.trace(cov_r) + np.trace(cov_f) - 2 * trace_root
    assert ClassifierFD().compute(x, digits) == pytest.approx(expected, rel=1e-3)


def test_metrics_check_their_input(clf, digits):
    for cls, _, _ in IMAGE_METRICS:
        with pytest.raises(ValueError, match="do not match"):
            cls().compute(torch.zeros(10, 1, 28, 28), digits)
    broken = digits.sample(50, gen(1))
    broken[3] = float("nan")
    assert ClassifierFD().compute(broken, digits) == math.inf
    everything_broken = torch.full((20, 1, 8, 8), float("nan"))
    assert ClassCoverage().compute(everything_broken, digits) == 0
    assert ClassKL().compute(everything_broken, digits) == pytest.approx(math.log(10))
    assert Precision().compute(everything_broken, digits) == 0
    assert Recall().compute(everything_broken, digits) == 0


def test_kl_to_uniform():
    assert kl_to_uniform(torch.tensor([5, 5, 5, 5])) == pytest.approx(0)
    assert kl_to_uniform(torch.tensor([8, 0, 0, 0])) == pytest.approx(math.log(4))
    # p = (3/4, 1/4) against (1/2, 1/2)
    expected = 0.75 * math.log(1.5) + 0.25 * math.log(0.5)
    assert kl_to_uniform(torch.tensor([3, 1])) == pytest.approx(expected)


def test_knn_manifold_on_points_worked_by_hand():
    line = torch.tensor([[0.0], [1.0], [2.0], [3.0], [10.0]])
    # k = 1: the nearest other point; k = 2: the second nearest
    assert knn_radii(line, 1).tolist() == [1, 1, 1, 1, 7]
    assert knn_radii(line, 2).tolist() == [2, 1, 1, 2, 8]
    queries = torch.tensor([[0.5], [5.0], [-1.5], [17.0], [18.0]])
    # 5.0 lies in the ball of 10 (radius 7) only; 17 on its edge (≤ counts); 18 outside
    radii = knn_radii(line, 1)
    assert inside_manifold(queries, line, radii).tolist() == [True, True, False, True, False]
    assert manifold_share(queries, line, 1) == pytest.approx(3 / 5)
    with pytest.raises(ValueError):
        knn_radii(line, 5)
    # chunking does not change the answer, bit for bit: distances are computed pair by pair
    # (compute_mode="donot_use_mm_for_euclid_dist"), so the chunk size cannot pick between
    # torch's matmul and direct paths; a ball's edge is the same whatever the chunking
    cloud = torch.randn(300, 4, generator=gen(0))
    assert torch.equal(knn_radii(cloud, 3), knn_radii(cloud, 3, chunk=7))
    queries = torch.randn(50, 4, generator=gen(1))
    radii = knn_radii(cloud, 3)
    assert torch.equal(
        inside_manifold(queries, cloud, radii), inside_manifold(queries, cloud, radii, chunk=7)
    )


def test_knn_distances_do_not_depend_on_the_block_size():
    # torch.cdist's default takes a matmul path when a block has more than 25 rows and a
    # direct one otherwise, so the same distance computed in a block of 300 rows and in one of
    # 7 differed in the last bits (1e-14 here); the manifold's distances must not
    queries = torch.randn(300, 128, generator=gen(2), dtype=torch.float64)
    points = torch.randn(20, 128, generator=gen(3), dtype=torch.float64)
    assert torch.equal(distances(queries, points)[:7], distances(queries[:7], points))
    assert torch.equal(distances(queries, points)[-7:], distances(queries[-7:], points))
