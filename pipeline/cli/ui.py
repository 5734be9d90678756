"""``pipeline ui``: the command (registered in :mod:`pipeline.cli.commands`); the server
and its authentication are in :mod:`pipeline.cli.ui_server`."""

from __future__ import annotations

import sys

import click

from pipeline.cli.options import with_tracking_options


@click.command()
@click.argument("name", required=False)
@click.option("--port", default=5000, show_default=True, type=int)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--no-browser", is_flag=True, help="Only print the address.")
@click.option(
    "--auth",
    is_flag=True,
    help="Ask for a user and password (MLflow's basic-auth app; users beside the store, the "
    "admin's password from MLFLOW_AUTH_ADMIN_PASSWORD on the first start).",
)
@click.option(
    "--allowed-hosts",
    default=None,
    metavar="HOSTS",
    help="Host headers the server answers (mlflow server --allowed-hosts; default: "
    "localhost and private addresses).",
)
@click.option(
    "--verbose", is_flag=True, help="Show the server's own log: start-up lines, every request."
)
@with_tracking_options
def ui(name, port, host, no_browser, auth, allowed_hosts, verbose, tracking_flags) -> None:
    """Start the MLflow UI on the configured store, opened on an experiment's runs.

    NAME is the experiment (or study, or comparison) to open; default: the most recently
    active one. It opens in the UI's model-training view. The server it starts can be the
    study's tracking server for workers on other machines (--host; docs/scaling.md); with
    an http:// tracking URI it opens that server.
    """
    from pipeline.cli.ui_server import run_ui

    tracking = tracking_flags.load()
    browser = not no_browser
    sys.exit(
        run_ui(
            tracking,
            name,
            host,
            port,
            browser,
            click.echo,
            auth=auth,
            allowed_hosts=allowed_hosts,
            verbose=verbose,
        )
    )
