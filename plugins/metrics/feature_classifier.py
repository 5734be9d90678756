"""The small CNN classifier whose features the image metrics are computed in (no plugin here).

Why a classifier of our own: the Inception network behind FID (Heusel et al. 2017) cannot
be fetched here, and it is a poor judge of 8×8 or 28×28 greyscale digits anyway. The
Stacked-MNIST evaluations (Metz et al. 2017, "Unrolled Generative Adversarial Networks";
Srivastava et al. 2017, VEEGAN; Lin et al. 2018, PacGAN) instead train a classifier on the real
training data and count the classes it predicts on generated samples; the Fréchet distance
and the precision/recall estimate are then taken in the same classifier's penultimate
features. The numbers are only comparable between runs that use the same classifier —
the cache key below makes that explicit — and never with published Inception FIDs.

**Data.** The dataset must have images (``shape`` ``(c, h, w)``) and integer ``labels``.
The classifier trains on ``train_images``/``train_labels`` when the dataset has them (the
digits plugin's first 80 %), else on ``images``/``labels``; its accuracy is measured on
``heldout_images``/``heldout_labels`` when present (digits' last 20 %, MNIST's t10k set),
else on a seeded 20 % of the labelled images that it then does not train on
(``HELDOUT_FRACTION``, ``SPLIT_SEED``). The real reference of every metric is the
classifier's training images.

**Network** (:class:`FeatureNet`): two 3×3 conv + ReLU layers of 32 and 64 channels,
2×2 max-pooling after the first while the side is above 8 and after the second, then
while the side is still above 8 (8 → 8 → 4; 28 → 14 → 7; 32 → 16 → 8), flatten,
``Linear(64·side², 128)`` + ReLU — the 128 **features** — and ``Linear(128, classes)``.
A LeNet-sized net (LeCun et al. 1998) is enough for these data sets and trains in seconds
on one CPU core.

**Training** (:class:`Recipe`): Adam (Kingma & Ba 2015) at its paper default lr 1e-3,
cross-entropy, batches of 64 over reshuffled epochs, ``max(500, 2 epochs)`` steps — 500
steps (22 epochs) for the 1,438 training digits, 1,875 for MNIST's 60,000 — with the
learning rate divided by 10 for the last 20 % of the steps. Deterministic: on the CPU,
single-threaded (``torch.set_num_threads(1)`` for the duration, so the result does not
depend on the core count, and two cores shared with a running GAN are not oversubscribed:
a 2-thread step was ten times slower than a 1-thread step on the project machine), seeded
(``Recipe.seed``), inside ``torch.random.fork_rng`` so the caller's global RNG is left
exactly as it was: training or loading the classifier in the middle of a GAN run (building
its layers draws random numbers) must not change that run. On scikit-learn's digits it
reaches 99.4 % held-out accuracy (357 of 359) in 5–11 s on the project machine (2 cores,
sometimes shared with a running training).

**Cache.** Trained once per data set and code: the key is the SHA-256 of
``CLASSIFIER_VERSION``, this file's bytes, the recipe, and the bytes, shapes and dtypes of
the training and held-out tensors. The weights, the held-out accuracy and the training
time are saved to ``<cache>/<key>.pt`` (written to a temporary file and renamed, so
concurrent processes never read half a file), where ``<cache>`` is
``$GAN_PIPELINE_CLASSIFIER_CACHE``, else ``$XDG_CACHE_HOME/gan-pipeline/classifiers``,
else ``~/.cache/gan-pipeline/classifiers``. Within a process a classifier is also kept in
memory by key, so tuning trials share one; a lock per key makes concurrent threads train
it once. ``STATS`` counts trainings and disk loads.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
import weakref
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.types import Dataset

#: bump to invalidate every cached classifier (the file's bytes are hashed too)
CLASSIFIER_VERSION = 1
#: environment variable naming the cache folder
CACHE_ENV = "GAN_PIPELINE_CLASSIFIER_CACHE"
#: share held out when the dataset has no held-out split of its own, and its seed
HELDOUT_FRACTION = 0.2
SPLIT_SEED = 0
#: images per forward pass when computing features
CHUNK = 2048
#: seed of the permutation that picks the real reference subset of precision and recall
REFERENCE_SEED = 0

#: how many classifiers this process trained and loaded from disk
STATS: Counter[str] = Counter()


@dataclass(frozen=True)
class Recipe:
    """How the classifier is trained (see the module docstring for the sources)."""

    #: at least this many steps, and at least ``epochs`` passes over the training data
    min_steps: int = 500
    epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-3
    #: fraction of the steps, at the end, run at lr / 10
    decay_fraction: float = 0.2
    seed: int = 0


class FeatureNet(nn.Module):
    """Images ``(n, c, h, w)`` → 128 features (``features``) → class logits (``forward``)."""

    #: read by torchmetrics' FrechetInceptionDistance for a custom feature extractor
    num_features = 128

    def __init__(self, in_channels: int, size: int, num_classes: int) -> None:
        super().__init__()
        side = size
        layers: list[nn.Module] = [nn.Conv2d(in_channels, 32, 3, padding=1), nn.ReLU()]
        if side > 8:
            layers.append(nn.MaxPool2d(2))
            side //= 2
        layers += [nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        side //= 2
        while side > 8:
            layers.append(nn.MaxPool2d(2))
            side //= 2
        layers += [nn.Flatten(), nn.Linear(64 * side * side, self.num_features), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(self.num_features, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


@dataclass
class LabelledSplit:
    train_images: Tensor
    train_labels: Tensor
    heldout_images: Tensor
    heldout_labels: Tensor
    num_classes: int


def has_labelled_images(dataset: Dataset) -> bool:
    """The image metrics apply: images with integer labels of at least two classes."""
    labels = getattr(dataset, "labels", None)
    return (
        dataset.is_image
        and getattr(dataset, "images", None) is not None
        and isinstance(labels, Tensor)
        and labels.numel() > 0
        and int(labels.unique().numel()) >= 2
    )


def labelled_split(dataset: Dataset) -> LabelledSplit:
    """Training and held-out images and labels, as described in the module docstring."""
    if not has_labelled_images(dataset):
        raise ValueError(
            f"dataset {dataset.name!r} has no labelled images: the classifier-feature "
            "metrics need image data with integer labels"
        )
    train_x = getattr(dataset, "train_images", None)
    train_y = getattr(dataset, "train_labels", None)
    if train_x is None or train_y is None:
        train_x, train_y = dataset.images, dataset.labels
    held_x = getattr(dataset, "heldout_images", None)
    held_y = getattr(dataset, "heldout_labels", None)
    if held_x is None or held_y is None:
        n = len(train_y)
        order = torch.randperm(n, generator=torch.Generator().manual_seed(SPLIT_SEED))
        n_held = max(1, round(HELDOUT_FRACTION * n))
        held, kept = order[:n_held].sort().values, order[n_held:].sort().values
        train_x, train_y, held_x, held_y = (
            train_x[kept],
            train_y[kept],
            train_x[held],
            train_y[held],
        )
    num_classes = int(max(train_y.max(), held_y.max())) + 1
    return LabelledSplit(
        train_x.float().contiguous(),
        train_y.long().contiguous(),
        held_x.float().contiguous(),
        held_y.long().contiguous(),
        num_classes,
    )


def cache_dir() -> Path:
    """``$GAN_PIPELINE_CLASSIFIER_CACHE``, else the XDG cache folder of gan-pipeline."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "gan-pipeline" / "classifiers"


def cache_key(split: LabelledSplit, recipe: Recipe) -> str:
    """SHA-256 of the classifier code and version, the recipe and the data bytes."""
    h = hashlib.sha256()
    h.update(f"gan-pipeline feature classifier v{CLASSIFIER_VERSION}\n".encode())
    h.update(Path(__file__).read_bytes())
    h.update(json.dumps(asdict(recipe), sort_keys=True).encode())
    h.update(str(split.num_classes).encode())
    for t in (split.train_images, split.train_labels, split.heldout_images, split.heldout_labels):
        h.update(f"{tuple(t.shape)} {t.dtype}\n".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def _batches(x: Tensor, chunk: int = CHUNK):
    for i in range(0, x.shape[0], chunk):
        yield x[i : i + chunk]


@torch.no_grad()
def accuracy(net: nn.Module, images: Tensor, labels: Tensor) -> float:
    predicted = torch.cat([net(b).argmax(1) for b in _batches(images)])
    return float((predicted == labels).float().mean())


def train_classifier(split: LabelledSplit, recipe: Recipe) -> tuple[FeatureNet, float, float]:
    """Train a :class:`FeatureNet`; returns it (eval mode), its held-out accuracy and seconds."""
    start = time.perf_counter()
    x, y = split.train_images, split.train_labels
    c, h, _ = x.shape[1:]
    steps = max(recipe.min_steps, -(-recipe.epochs * len(y) // recipe.batch_size))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng(devices=[]):
            net = _fit(x, y, c, h, split.num_classes, recipe, steps)
    finally:
        torch.set_num_threads(threads)
    held = accuracy(net, split.heldout_images, split.heldout_labels)
    return net, held, time.perf_counter() - start


def _fit(x: Tensor, y: Tensor, c: int, h: int, k: int, recipe: Recipe, steps: int) -> FeatureNet:
    torch.manual_seed(recipe.seed)
    net = FeatureNet(c, h, k)
    g = torch.Generator().manual_seed(recipe.seed)
    opt = torch.optim.Adam(net.parameters(), lr=recipe.lr)
    decay_at = round(steps * (1 - recipe.decay_fraction))
    order, pos = torch.randperm(len(y), generator=g), 0
    net.train()
    for step in range(steps):
        if step == decay_at:
            for group in opt.param_groups:
                group["lr"] = recipe.lr / 10
        if pos + recipe.batch_size > len(y):
            order, pos = torch.randperm(len(y), generator=g), 0
        idx = order[pos : pos + recipe.batch_size]
        pos += recipe.batch_size
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    net.eval()
    return net


@dataclass
class FeatureClassifier:
    """A trained classifier, its record, and the real reference features (computed once)."""

    key: str
    net: FeatureNet
    num_classes: int
    heldout_accuracy: float
    train_seconds: float
    n_train: int
    n_heldout: int
    path: Path
    loaded_from_cache: bool
    reference_images: Tensor
    _reference: tuple[Tensor, Tensor] | None = field(default=None, repr=False)
    _memo: tuple[tuple, Tensor, Tensor, Tensor] | None = field(default=None, repr=False)
    _radii: dict[tuple[int, int], Tensor] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @torch.no_grad()
    def _compute(self, x: Tensor) -> tuple[Tensor, Tensor]:
        feats = []
        for b in _batches(x.detach().to("cpu", torch.float32)):
            feats.append(self.net.features(b))
        features = torch.cat(feats)
        return features, self.net.head(features)

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Features ``(n, 128)`` and logits ``(n, classes)`` of images ``x``.

        The last result is remembered (by storage, shape, strides and version of ``x``),
        so the metrics of one evaluation run the network once.
        """
        tag = (x.data_ptr(), tuple(x.shape), x.stride(), x._version, x.dtype, x.device)
        with self._lock:
            memo = self._memo
        if memo is not None and memo[0] == tag:
            return memo[2], memo[3]
        features, logits = self._compute(x)
        with self._lock:
            self._memo = (tag, x, features, logits)
        return features, logits

    def reference(self) -> tuple[Tensor, Tensor]:
        """Features and logits of every real reference (training) image."""
        with self._lock:
            ref = self._reference
        if ref is None:
            ref = self._compute(self.reference_images)
            with self._lock:
                self._reference = ref
        return ref

    def predict(self, x: Tensor) -> Tensor:
        """Predicted class of each image of ``x``."""
        return self.features_and_logits(x)[1].argmax(1)

    def reference_subset(self, n: int) -> Tensor:
        """Features of ``min(n, n_train)`` real training images, a seeded random subset."""
        features = self.reference()[0]
        order = torch.randperm(
            features.shape[0], generator=torch.Generator().manual_seed(REFERENCE_SEED)
        )
        return features[order[:n]]

    def reference_radii(self, n: int, k: int) -> Tensor:
        """k-NN radii within :meth:`reference_subset` ``(n)`` (computed once per n and k)."""
        from pipeline_plugins.metrics.knn_manifold import knn_radii

        with self._lock:
            radii = self._radii.get((n, k))
        if radii is None:
            radii = knn_radii(self.reference_subset(n), k)
            with self._lock:
                self._radii[(n, k)] = radii
        return radii


_BY_KEY: dict[str, FeatureClassifier] = {}
_BY_DATASET: weakref.WeakKeyDictionary[Dataset, FeatureClassifier] = weakref.WeakKeyDictionary()
_LOCKS: dict[str, threading.Lock] = {}
_GLOBAL = threading.Lock()


def _save(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _load(path: Path, key: str) -> dict | None:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt or foreign file: train again and overwrite it
        return None
    if not isinstance(payload, dict) or payload.get("key") != key:
        return None
    return payload


def classifier_for(dataset: Dataset, recipe: Recipe | None = None) -> FeatureClassifier:
    """The dataset's classifier: from memory, else from the disk cache, else trained."""
    recipe = recipe or Recipe()
    if recipe == Recipe():
        known = _BY_DATASET.get(dataset)
        if known is not None:
            return known
    split = labelled_split(dataset)
    key = cache_key(split, recipe)
    with _GLOBAL:
        lock = _LOCKS.setdefault(key, threading.Lock())
    with lock:
        clf = _BY_KEY.get(key)
        if clf is None:
            clf = _load_or_train(key, split, recipe)
            _BY_KEY[key] = clf
    if recipe == Recipe():
        _BY_DATASET[dataset] = clf
    return clf


def _load_or_train(key: str, split: LabelledSplit, recipe: Recipe) -> FeatureClassifier:
    path = cache_dir() / f"{key}.pt"
    c, h, _ = split.train_images.shape[1:]
    payload = _load(path, key) if path.is_file() else None
    if payload is not None:
        with torch.random.fork_rng(devices=[]):  # the layers' initialisation draws numbers
            net = FeatureNet(c, h, split.num_classes)
        net.load_state_dict(payload["state_dict"])
        net.eval()
        STATS["loaded"] += 1
        from_cache = True
        held, seconds = float(payload["heldout_accuracy"]), float(payload["train_seconds"])
    else:
        net, held, seconds = train_classifier(split, recipe)
        STATS["trained"] += 1
        from_cache = False
        _save(
            path,
            {
                "key": key,
                "version": CLASSIFIER_VERSION,
                "state_dict": net.state_dict(),
                "heldout_accuracy": held,
                "train_seconds": seconds,
                "n_train": len(split.train_labels),
                "n_heldout": len(split.heldout_labels),
                "num_classes": split.num_classes,
                "recipe": asdict(recipe),
                "torch": str(torch.__version__),
            },
        )
    for p in net.parameters():
        p.requires_grad_(False)
    return FeatureClassifier(
        key=key,
        net=net,
        num_classes=split.num_classes,
        heldout_accuracy=held,
        train_seconds=seconds,
        n_train=len(split.train_labels),
        n_heldout=len(split.heldout_labels),
        path=path,
        loaded_from_cache=from_cache,
        reference_images=split.train_images,
    )


def checked_samples(samples: Tensor, dataset: Dataset, metric: str) -> Tensor:
    """``samples`` as a CPU float tensor after checking their shape against the dataset's."""
    if samples.ndim < 1 or samples.shape[0] < 2:
        raise ValueError(f"{metric} needs at least two samples, got shape {tuple(samples.shape)}")
    if tuple(samples.shape[1:]) != tuple(dataset.shape):
        raise ValueError(
            f"{metric}: samples of shape {tuple(samples.shape[1:])} do not match the "
            f"dataset's {tuple(dataset.shape)}"
        )
    return samples.detach().to("cpu", torch.float32)
