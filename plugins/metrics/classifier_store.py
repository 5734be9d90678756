"""Where a dataset's feature classifier comes from: this process's memory, the disk cache
(:mod:`pipeline_plugins.metrics.classifier_cache`), or training
(:mod:`pipeline_plugins.metrics.classifier_training`), in that order (no plugin here).

Within a process a classifier is kept in memory by its cache key (and, for the default
recipe, by dataset object), so the metrics of a run and the trials of a tuning study share
one; a lock per key makes concurrent threads train or load it once.
"""

from __future__ import annotations

import threading
import weakref

from pipeline.types import Dataset
from pipeline_plugins.metrics.classifier_cache import (
    cache_dir,
    cache_key,
    read_cached,
    write_cached,
)
from pipeline_plugins.metrics.classifier_training import Recipe, train_classifier
from pipeline_plugins.metrics.feature_classifier import FeatureClassifier
from pipeline_plugins.metrics.labelled_images import LabelledSplit, labelled_split

_BY_KEY: dict[str, FeatureClassifier] = {}
_BY_DATASET: weakref.WeakKeyDictionary[Dataset, FeatureClassifier] = weakref.WeakKeyDictionary()
_LOCKS: dict[str, threading.Lock] = {}
_GLOBAL = threading.Lock()


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
    cached = read_cached(path, key, split)
    if cached is not None:
        net, held, seconds = cached
    else:
        net, held, seconds = train_classifier(split, recipe)
        write_cached(path, key, net, held, seconds, split, recipe)
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
        loaded_from_cache=cached is not None,
        reference_images=split.train_images,
    )
