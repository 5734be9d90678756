"""gan-pipeline: compare GAN losses and critic constraints, tuned with Optuna, tracked in MLflow."""

from pipeline.hookspecs import hookimpl

__all__ = ["hookimpl"]
__version__ = "0.1.0"
