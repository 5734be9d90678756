"""``pipeline sync``: the command (registered in :mod:`pipeline.cli.commands`); the work is
in :mod:`pipeline.training.sync`."""

from __future__ import annotations

import sys

import click

from pipeline.cli.options import with_tracking_options


@click.command()
@with_tracking_options
def sync(tracking_flags) -> None:
    """Send what runs kept locally when their tracking server went away, now it is back.

    Each folder of unsent_dir (mlflow.yaml; default ./gan-pipeline-unsent) whose run is on
    this tracking URI: its metric rows and files go to the run, the run ends with its true
    status (FINISHED, KILLED or FAILED), and the folder is removed. Runs on another server
    are left alone and named. A server still down: one line, exit 1, nothing lost.
    """
    from pipeline.training.sync import sync_folder, unsent_folders

    tracking = tracking_flags.load()
    folders = unsent_folders(tracking.unsent_dir)
    if not folders:
        click.echo(f"nothing to send: no run folders in {tracking.unsent_dir}")
        return
    left = 0
    for folder in folders:
        done = sync_folder(folder, tracking)
        if done.status is None:
            left += 1
            click.echo(f"left {done.folder}: {done.left_because}", err=True)
            continue
        click.echo(
            f"run {done.run_id}: {done.metric_rows} metric rows and {done.files} files sent, "
            f"ended {done.status}; resume with --resume runs:/{done.run_id}"
            if done.status != "FINISHED"
            else f"run {done.run_id}: {done.metric_rows} metric rows and {done.files} files "
            "sent, ended FINISHED"
        )
    sys.exit(1 if left else 0)
