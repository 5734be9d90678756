"""Options several ``pipeline`` commands share: ``-o key=value`` and the MLflow tracking
options, which a command receives as one :class:`TrackingFlags`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from pipeline.tracking.client import TrackingSettings

#: where runs go (train, tune, best, ui); see :meth:`TrackingFlags.load`
tracking_options = [
    click.option(
        "--tracking-uri",
        default=None,
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, mlflow.yaml, "
        "sqlite:///mlflow.db).",
    ),
    click.option(
        "--mlflow-config",
        type=click.Path(dir_okay=False),
        default=None,
        help="MLflow settings file (default: ./mlflow.yaml when present).",
    ),
    click.option(
        "--experiment-name",
        default=None,
        help="MLflow experiment (default: mlflow.yaml, then the experiment's name).",
    ),
]


#: ``-o key=value``, repeatable, read as YAML (train and tune)
override_option = click.option(
    "-o",
    "--override",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. -o train.steps=2000 (repeatable; read as YAML).",
)


@dataclass(frozen=True)
class TrackingFlags:
    """``--tracking-uri``, ``--mlflow-config`` and ``--experiment-name`` as given (None: not)."""

    tracking_uri: str | None
    mlflow_config: str | None
    experiment_name: str | None

    def load(self) -> TrackingSettings:
        """The settings they select (``mlflow.yaml`` read now: a command loads them when its
        own input has been checked, so the first error the user sees stays the same)."""
        from pipeline.tracking.client import TrackingSettings

        return TrackingSettings.load(
            self.mlflow_config,
            tracking_uri=self.tracking_uri,
            experiment_name=self.experiment_name,
        )


def with_tracking_options(f: Callable[..., None]) -> Callable[..., None]:
    """Adds the tracking options; the command gets them as one ``tracking_flags`` argument."""

    @functools.wraps(f)
    def command(*args, tracking_uri, mlflow_config, experiment_name, **kwargs):
        flags = TrackingFlags(tracking_uri, mlflow_config, experiment_name)
        return f(*args, tracking_flags=flags, **kwargs)

    for option in reversed(tracking_options):
        command = option(command)
    return command


#: ``pipeline tune --workers N --gpus 0,1`` (:mod:`pipeline.tuning.workers`); the hidden
#: ``--worker-index`` marks one of the worker processes such an invocation starts
worker_options = [
    click.option(
        "--workers",
        type=int,
        default=None,
        envvar="PIPELINE_WORKERS",
        help="Worker processes on the study, started and waited for by this command; "
        "--n-trials is split among them (default: one per usable core on CPU, 1 thread "
        "each; 1 on CUDA; see docs/scaling.md).",
    ),
    click.option(
        "--gpus",
        default=None,
        metavar="0,1",
        help="CUDA devices for the workers: worker i uses the (i mod count)-th "
        "(default: every visible GPU, when the device is auto or cuda).",
    ),
    click.option("--worker-index", type=int, default=None, hidden=True),
]


def with_worker_options(f: Callable[..., None]) -> Callable[..., None]:
    """Adds ``--workers``, ``--gpus`` and the hidden ``--worker-index``."""
    for option in reversed(worker_options):
        f = option(f)
    return f
