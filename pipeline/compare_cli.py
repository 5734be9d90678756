"""``pipeline compare FILE``: the command (registered in :mod:`pipeline.cli`); the work is in
:mod:`pipeline.compare` (imported when the command runs: the CLI starts without torch)."""

from __future__ import annotations

import sys

import click

from pipeline.cli_options import override_option, with_tracking_options


@click.command()
@click.argument("comparison_file", type=click.Path(dir_okay=False))
@override_option
@click.option(
    "--report-only", is_flag=True, help="Rebuild the report from the runs and studies that exist."
)
@click.option(
    "--out",
    "out_dir",
    default="reports",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Folder for the report (written to OUT/<comparison>/ and logged to the parent run).",
)
@click.option(
    "--storage",
    default=None,
    help="Optuna storage of the variants' studies (default: optuna.journal beside mlflow.db).",
)
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N.")
@with_tracking_options
def compare(
    comparison_file, overrides, report_only, out_dir, storage, device, tracking_flags
) -> None:
    """Tune each variant of a comparison file with the same budget, re-train each best
    setting on the seeds, and report mean ± standard error (Lucic et al. 2018).

    Run it again to continue where it stopped; a changed file (or other -o overrides of
    its base experiment) is refused.
    """
    from pathlib import Path

    from pipeline.compare import ComparisonRunner
    from pipeline.compare_file import load_comparison

    comparison = load_comparison(comparison_file, overrides)
    runner = ComparisonRunner(
        comparison,
        tracking=tracking_flags.load(),
        storage=storage,
        device=device,
        echo=click.echo,
    )
    try:
        folder = runner.run(Path(out_dir), report_only=report_only)
    except KeyboardInterrupt:
        click.echo("interrupted: rerun the same command to continue", err=True)
        sys.exit(130)
    click.echo(f"report: {folder / 'report.md'}")
    click.echo(f"browse with: pipeline ui {runner.tracking.experiment_name}")
