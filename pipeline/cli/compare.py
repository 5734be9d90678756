"""``pipeline compare FILE``: the command (registered in :mod:`pipeline.cli.commands`);
the work is in
:mod:`pipeline.compare.runner` (imported when the command runs: the CLI starts without torch)."""

from __future__ import annotations

import sys

import click

from pipeline.cli.options import override_option, with_tracking_options
from pipeline.cli.progress import CompareBar, Lines, in_terminal


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
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    envvar="PIPELINE_WORKERS",
    help="Worker processes for each variant's trials and seed re-trainings (as pipeline "
    "tune --workers: default one per usable core on CPU, 1 thread each; Ctrl-C stops all).",
)
@click.option("--worker", "worker_task", default=None, hidden=True)
@with_tracking_options
@click.pass_context
def compare(
    ctx,
    comparison_file,
    overrides,
    report_only,
    out_dir,
    storage,
    device,
    workers,
    worker_task,
    tracking_flags,
) -> None:
    """Tune each variant of a comparison file with the same budget, re-train each best
    setting on the seeds, and report mean ± standard error (Lucic et al. 2018).

    Run it again to continue where it stopped; a changed file (or other -o overrides of
    its base experiment) is refused.
    """
    import json
    import tempfile
    from pathlib import Path

    from pipeline.compare.file import load_comparison
    from pipeline.compare.runner import ComparisonRunner
    from pipeline.compare.workers import CompareWorkers
    from pipeline.tuning.workers import command_line

    comparison = load_comparison(comparison_file, overrides)
    task = None if worker_task is None else json.loads(worker_task)
    prefix = "" if task is None else f"[worker {task['index']}] "
    bar: CompareBar | None = None
    lines: Lines = Lines()
    runner = ComparisonRunner(  # every variant is checked here, before any bar is drawn
        comparison,
        tracking=tracking_flags.load(),
        storage=storage,
        device=device,
        echo=lambda line: lines.write(prefix + line),
        on_phase=lambda variant, phase, seed: bar.phase(variant, phase, seed) if bar else None,
    )
    # a bar in a terminal (variant, phase, seed); plain lines to a file, a pipe, a worker
    if task is None and not report_only and in_terminal():
        bar = CompareBar(list(comparison.spec.variants))
        lines = bar
    if task is not None:
        try:
            with tempfile.TemporaryDirectory(prefix="gan-pipeline-compare-") as tmp:
                runner.run_worker(task, Path(tmp))
        except KeyboardInterrupt:
            sys.exit(130)
        return
    if workers is None:  # one per usable core on CPU (pipeline/training/cores.py)
        from pipeline.tuning.workers import default_workers_for

        workers = default_workers_for(runner.device or "auto")
    pool = None
    if workers > 1 and not report_only:
        pool = CompareWorkers(workers, command_line(ctx, ("workers", "worker_task")), lines.write)
    try:
        folder = runner.run(Path(out_dir), report_only=report_only, workers=pool)
    except KeyboardInterrupt:
        if bar is not None:
            bar.close()
        click.echo("interrupted: rerun the same command to continue", err=True)
        sys.exit(130)
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"report: {folder / 'report.md'}")
    click.echo(f"browse with: pipeline ui {runner.tracking.experiment_name}")
