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
