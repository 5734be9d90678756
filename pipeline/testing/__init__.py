"""A plugin author's test kit: ready-made contract checks and a registration helper.

Each ``check_*`` function takes a plugin class (or an instance, to test other settings),
exercises it the way the training loop does, on the CPU, with real torch, and raises
:class:`PluginContractError` (an ``AssertionError``) whose message starts with the
plugin's kind, name and class, so a failing test says which plugin broke which rule::

    from pipeline.testing import check_constraint, check_loss, check_trains

    from my_package.my_loss import MyLoss

    def test_my_loss_keeps_the_contract():
        check_loss(MyLoss)

    def test_my_loss_trains():
        check_trains(loss=MyLoss, steps=20)   # registered for the length of the call

    def test_my_penalty_in_a_population():     # its population form, if it has one
        check_population(constraint=MyPenalty, members=[{}, {"constraint": {"gamma": 1}}])

:func:`registered` registers plugin classes (or hook modules) in the process-wide
registry for the length of a ``with`` block; the pytest fixture ``register_plugin`` does
the same for the length of one test (enable it with ``pytest_plugins = ["pipeline.testing"]``
in your ``conftest.py``).
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import ExitStack
from typing import Any

from pipeline.host.registry import PluginInfo
from pipeline.testing.contract import PluginContractError, PluginLike
from pipeline.testing.population import check_population
from pipeline.testing.registration import registered
from pipeline.testing.sample_checks import check_dataset, check_metric, check_model
from pipeline.testing.step_checks import check_constraint, check_loss, check_optimizer
from pipeline.testing.training import check_trains
from pipeline.types import kind_of

__all__ = [
    "PluginContractError",
    "check_constraint",
    "check_dataset",
    "check_loss",
    "check_metric",
    "check_model",
    "check_optimizer",
    "check_plugin",
    "check_population",
    "check_trains",
    "registered",
]


def check_plugin(plugin: PluginLike, **kwargs: Any) -> None:
    """The check of the plugin's kind, ``check_<kind>`` (a metric needs ``dataset=``)."""
    kind = kind_of(plugin if isinstance(plugin, type) else type(plugin))
    if kind is None:
        raise PluginContractError(f"{plugin!r} is not a plugin: it has no known kind")
    check: Callable[..., None] = globals()[f"check_{kind.name}"]
    if kind.name == "metric":
        check(plugin, kwargs.pop("dataset"), **kwargs)
    else:
        check(plugin, **kwargs)


# -- pytest ----------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - the kit works without pytest
    pass
else:
    __all__ += ["register_plugin"]

    @pytest.fixture
    def register_plugin():
        """``register_plugin(MyLoss)`` registers for the length of the test (then removes).

        Takes what :func:`registered` takes, plus ``registry=``; returns what was
        registered.
        """
        with ExitStack() as stack:

            def register(*plugins: Any, **kwargs: Any) -> list[PluginInfo]:
                return stack.enter_context(registered(*plugins, **kwargs))

            yield register
