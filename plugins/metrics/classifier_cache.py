"""The feature classifiers' disk cache: one file per data set and code.

The key is the SHA-256 of ``CLASSIFIER_VERSION``, the source bytes of every module that
decides the weights (``RECIPE_MODULES``: the network, its training, and this file's
format), the recipe, and the bytes, shapes and dtypes of the training and held-out
tensors: a change to any of them trains a new classifier. The weights, the held-out
accuracy and the training time are saved to ``<cache>/<key>.pt`` (written to a temporary
file and renamed, so concurrent processes never read half a file), where ``<cache>`` is
``$GAN_PIPELINE_CLASSIFIER_CACHE``, else ``$XDG_CACHE_HOME/gan-pipeline/classifiers``,
else ``~/.cache/gan-pipeline/classifiers`` (the XDG Base Directory specification's
default for caches).
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path

import torch

from pipeline_plugins.metrics import classifier_training, feature_net
from pipeline_plugins.metrics.classifier_training import Recipe
from pipeline_plugins.metrics.feature_net import FeatureNet
from pipeline_plugins.metrics.labelled_images import LabelledSplit

#: bump to invalidate every cached classifier (the code's bytes are hashed too)
CLASSIFIER_VERSION = 1
#: environment variable naming the cache folder
CACHE_ENV = "GAN_PIPELINE_CLASSIFIER_CACHE"
#: the modules whose source is part of the key: the network, its training, this file
RECIPE_MODULES = (feature_net, classifier_training, sys.modules[__name__])


def cache_dir() -> Path:
    """``$GAN_PIPELINE_CLASSIFIER_CACHE``, else the XDG cache folder of gan-pipeline."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "gan-pipeline" / "classifiers"


def cache_key(split: LabelledSplit, recipe: Recipe) -> str:
    """SHA-256 of the classifier's code and version, the recipe and the data bytes."""
    h = hashlib.sha256()
    h.update(f"gan-pipeline feature classifier v{CLASSIFIER_VERSION}\n".encode())
    for module in RECIPE_MODULES:
        h.update(f"{module.__name__}\n".encode())
        h.update(Path(module.__file__).read_bytes())
    h.update(json.dumps(asdict(recipe), sort_keys=True).encode())
    h.update(str(split.num_classes).encode())
    for t in (split.train_images, split.train_labels, split.heldout_images, split.heldout_labels):
        h.update(f"{tuple(t.shape)} {t.dtype}\n".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def read_cached(
    path: Path, key: str, split: LabelledSplit
) -> tuple[FeatureNet, float, float] | None:
    """The net (eval mode), held-out accuracy and training seconds saved under ``key``;
    None when the file is missing, corrupt, foreign or of another key (then train again)."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # a corrupt or foreign file: train again and overwrite it
        return None
    if not isinstance(payload, dict) or payload.get("key") != key:
        return None
    c, h, _ = split.train_images.shape[1:]
    with torch.random.fork_rng(devices=[]):  # the layers' initialisation draws numbers
        net = FeatureNet(c, h, split.num_classes)
    net.load_state_dict(payload["state_dict"])
    net.eval()
    return net, float(payload["heldout_accuracy"]), float(payload["train_seconds"])


def write_cached(
    path: Path,
    key: str,
    net: FeatureNet,
    heldout_accuracy: float,
    train_seconds: float,
    split: LabelledSplit,
    recipe: Recipe,
) -> None:
    """Save a trained classifier under ``key`` at ``path``, atomically (temp file + rename)."""
    payload = {
        "key": key,
        "version": CLASSIFIER_VERSION,
        "state_dict": net.state_dict(),
        "heldout_accuracy": heldout_accuracy,
        "train_seconds": train_seconds,
        "n_train": len(split.train_labels),
        "n_heldout": len(split.heldout_labels),
        "num_classes": split.num_classes,
        "recipe": asdict(recipe),
        "torch": str(torch.__version__),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.stem, suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
