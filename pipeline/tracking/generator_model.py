"""The trained generator as an MLflow PyTorch model (``runs:/<run_id>/generator``)."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def fluent_tracking_uri(uri: str) -> Iterator[None]:
    """MLflow's fluent API (``log_model``) on ``uri`` for the block, then as before.

    ``mlflow.set_tracking_uri`` also exports ``MLFLOW_TRACKING_URI`` to the process and every
    child it starts, where it beats ``mlflow.yaml`` (a ``pipeline ui`` started later from the
    same process served the wrong store); the variable is put back as it was."""
    from mlflow.tracking._tracking_service import utils

    before = os.environ.get("MLFLOW_TRACKING_URI")
    try:
        with utils._use_tracking_uri(uri):
            yield
    finally:
        if before is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = before


def log_generator_model(client, run_id: str, tracking_uri: str, generator, noise_dim: int) -> None:
    """Log ``generator`` to run ``run_id`` as the MLflow PyTorch model ``generator``, with
    ``noise_dim`` in its metadata.

    ``pickle`` serialization (the ``pt2`` default needs an input example and an export) and
    explicit pip requirements: inferring them took 10 s per call here.
    """
    import mlflow.pytorch
    import torch

    from pipeline import __version__

    # we chose pickle on purpose; MLflow's warning about it is noise to the user
    logging.getLogger("mlflow.pytorch").setLevel(logging.ERROR)
    with fluent_tracking_uri(tracking_uri):
        # create the LoggedModel in the run's experiment ourselves: given only a run id,
        # MLflow 3.17 files it under the fluent default experiment (./mlruns/0)
        experiment_id = client.get_run(run_id).info.experiment_id
        logged = client.create_logged_model(
            experiment_id, name="generator", source_run_id=run_id, model_type="generator"
        )
        mlflow.pytorch.log_model(
            generator,
            name="generator",
            run_id=run_id,
            model_id=logged.model_id,
            serialization_format="pickle",
            pip_requirements=[
                f"torch=={torch.__version__.split('+')[0]}",
                f"gan-pipeline=={__version__}",
            ],
            metadata={"noise_dim": noise_dim},
        )
