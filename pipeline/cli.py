"""The ``pipeline`` command line: ``train``, ``plugins``, ``ui``, …"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import click

from pipeline.errors import PipelineError

# MLflow telemetry stays off unless the user turned it on (see pipeline.tracking).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


class PipelineGroup(click.Group):
    """Turns every :class:`PipelineError` into one line on stderr and its exit status."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)


@click.group(cls=PipelineGroup)
@click.version_option(package_name="gan-pipeline")
def main() -> None:
    """Compare GAN losses and critic constraints: train, tune, browse."""


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


def with_tracking_options(f):
    for option in reversed(tracking_options):
        f = option(f)
    return f


@main.command()
@click.argument("experiment_file", type=click.Path(dir_okay=False))
@click.option(
    "-o",
    "--override",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a config value, e.g. -o train.steps=2000 (repeatable).",
)
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N (default: train.device).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@with_tracking_options
def train(
    experiment_file, overrides, device, no_progress, tracking_uri, mlflow_config, experiment_name
) -> None:
    """Train one experiment file as one MLflow run."""
    from pipeline.config import load_experiment
    from pipeline.registry import default_registry
    from pipeline.tracking import TrackingSettings
    from pipeline.train import resolve_device, run_training

    registry = default_registry()
    if device is not None:
        overrides = (*overrides, f"train.device={device}")
    exp = load_experiment(experiment_file, overrides, registry=registry)
    resolve_device(exp.train.device)  # a bad device is bad input: fail before any run exists
    tracking = TrackingSettings.load(
        mlflow_config, tracking_uri=tracking_uri, experiment_name=experiment_name
    )
    try:
        result = run_training(exp, tracking=tracking, progress=not no_progress)
    except KeyboardInterrupt:
        click.echo("interrupted: run marked KILLED", err=True)
        sys.exit(130)
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
    click.echo(f"finished {result.steps} steps in {result.wall_time_s:.1f} s: {metrics}")
    click.echo(
        f"MLflow run {result.run_id} in {tracking.tracking_uri} "
        f"(experiment {tracking.experiment_name or exp.name!r}); browse with: pipeline ui"
    )


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List every registered plugin: name, kind, package and version, hooks."""
    from pipeline.registry import default_registry

    infos = default_registry().all()
    rows = [
        {
            "name": i.name,
            "kind": i.kind,
            "package": "built-in" if i.builtin else i.package,
            "version": i.version,
            "module": i.module,
            "hooks": list(i.hooks),
            "description": i.cls.description,
        }
        for i in infos
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    headers = ("kind", "name", "package", "version", "description")
    table = [[str(r[h]) for h in headers] for r in rows]
    widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    click.echo("  ".join("-" * w for w in widths))
    for row in table:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))


@main.command()
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@with_tracking_options
def ui(port, host, tracking_uri, mlflow_config, experiment_name) -> None:
    """Start the MLflow UI on the configured store (127.0.0.1 by default)."""
    from pipeline.tracking import TrackingSettings, client_for

    tracking = TrackingSettings.load(
        mlflow_config, tracking_uri=tracking_uri, experiment_name=experiment_name
    )
    url = f"http://{host}:{port}/"
    name = tracking.experiment_name
    if name:
        found = client_for(tracking).get_experiment_by_name(name)
        if found is not None:
            url += f"#/experiments/{found.experiment_id}/runs"
    click.echo(f"MLflow UI on {url}  (store: {tracking.tracking_uri}; Ctrl-C to stop)")
    cmd = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        tracking.tracking_uri,
        "--default-artifact-root",
        tracking.artifact_uri(),
        "--host",
        host,
        "--port",
        str(port),
    ]
    env = dict(os.environ)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    try:
        sys.exit(subprocess.call(cmd, env=env))
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":  # pragma: no cover
    main()
