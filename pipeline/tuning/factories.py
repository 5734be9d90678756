"""Optuna samplers and pruners by the name ``pipeline tune --sampler/--pruner`` takes.

One table each (:data:`SAMPLERS`, :data:`PRUNERS`): the CLI's choices are their keys, so a
sampler added here is offered there. Importing this module imports no Optuna (the CLI
imports it to build ``--help``); each factory imports Optuna when it is called.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from optuna.pruners import BasePruner
    from optuna.samplers import BaseSampler

    from pipeline.tuning.search_space import SearchSpace

#: ``--sampler``'s default: TPE is Optuna's own default sampler
DEFAULT_SAMPLER = "tpe"
#: ``--pruner``'s default: the median rule is Optuna's own default pruner
DEFAULT_PRUNER = "median"


def _tpe(seed: int | None, space: SearchSpace) -> BaseSampler:
    import optuna

    # multivariate + group: TPE that models conditional (group-wise) spaces jointly
    # (Falkner et al. 2018; Optuna's recommendation for define-by-run conditionals)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=True)


def _random(seed: int | None, space: SearchSpace) -> BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=seed)


def _grid(seed: int | None, space: SearchSpace) -> BaseSampler:
    import optuna

    return optuna.samplers.GridSampler(space.grid(), seed=seed)


def _cmaes(seed: int | None, space: SearchSpace) -> BaseSampler:
    import optuna

    if any(p.type == "categorical" for p in space.params.values()):
        raise ConfigError("--sampler", "cmaes needs a numeric space (no categoricals)")
    return optuna.samplers.CmaEsSampler(seed=seed)


def _median(steps: int, eval_every: int) -> BasePruner:
    import optuna

    # Optuna's defaults, but never at a trial's first evaluation: GAN metrics that
    # early are mostly noise (a 30-trial WGAN-GP tune here pruned 19 trials there)
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=eval_every + 1)


def _hyperband(steps: int, eval_every: int) -> BasePruner:
    import optuna

    return optuna.pruners.HyperbandPruner(min_resource=eval_every, max_resource=steps)


def _nop(steps: int, eval_every: int) -> BasePruner:
    import optuna

    return optuna.pruners.NopPruner()


#: ``--sampler`` name → factory(seed, space)
SAMPLERS: dict[str, Callable[[int | None, SearchSpace], BaseSampler]] = {
    "tpe": _tpe,
    "random": _random,
    "grid": _grid,
    "cmaes": _cmaes,
}
#: ``--pruner`` name → factory(train.steps, train.eval_every)
PRUNERS: dict[str, Callable[[int, int], BasePruner]] = {
    "median": _median,
    "hyperband": _hyperband,
    "none": _nop,
}


#: how far apart the seeds of two invocations on one study lie: a ``--seed N`` run on a
#: study that already holds ``k`` trials seeds its sampler ``N + k × RERUN_SEED_STRIDE``
#: (:func:`rerun_seed`). A seeded sampler repeats its draws (Optuna's FAQ, "How can I
#: obtain reproducible optimization results?"), so a rerun seeded ``N`` again drew the
#: first run's parameters again. The stride is a prime far above any worker count:
#: ``--workers`` gives worker ``i`` the seed ``N + i`` (:mod:`pipeline.tuning.workers`),
#: and ``N + i`` meets ``N + k × stride`` only for a million workers.
RERUN_SEED_STRIDE = 1_000_003


def rerun_seed(seed: int | None, trials_so_far: int) -> int | None:
    """The sampler's seed for ``--seed`` ``seed`` on a study holding ``trials_so_far``
    trials: ``seed`` itself on a new study (a fresh study is reproducible as before), else
    ``seed + trials_so_far × RERUN_SEED_STRIDE``, so a rerun continues with new draws
    instead of repeating the first run's; None stays None (Optuna seeds from the OS)."""
    if seed is None or trials_so_far <= 0:
        return seed
    return seed + trials_so_far * RERUN_SEED_STRIDE


def make_sampler(name: str, seed: int | None, space: SearchSpace) -> BaseSampler:
    """The Optuna sampler ``name`` (a key of :data:`SAMPLERS`) for ``space``."""
    if name not in SAMPLERS:
        raise ConfigError(
            "--sampler", f"unknown sampler {name!r}; choose from {', '.join(SAMPLERS)}"
        )
    return SAMPLERS[name](seed, space)


def make_pruner(name: str, steps: int, eval_every: int) -> BasePruner:
    """The Optuna pruner ``name`` (a key of :data:`PRUNERS`) for a trial of ``steps`` steps
    evaluated every ``eval_every``."""
    if name not in PRUNERS:
        raise ConfigError("--pruner", f"unknown pruner {name!r}; choose from {', '.join(PRUNERS)}")
    return PRUNERS[name](steps, eval_every)
