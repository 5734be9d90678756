"""The ``pipeline`` group's failure handling: every failure ends in one ``error:`` line."""

from __future__ import annotations

import click

from pipeline.errors import DEBUG_ENV, PipelineError, debug_wanted, one_line


class PipelineGroup(click.Group):
    """Turns every :class:`PipelineError` into one line on stderr and its exit status, and
    any other failure into one ``error:`` line too (exit 1): what ran out and what to do
    when the machine refused memory or disk, else the exception's type and first line.
    ``--debug`` or ``PIPELINE_DEBUG=1`` lets the traceback through instead."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except PipelineError as exc:
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.Abort):
            raise
        except Exception as exc:
            if debug_wanted():
                raise
            click.echo(
                f"error: {one_line(exc)} ({DEBUG_ENV}=1 or pipeline --debug shows the traceback)",
                err=True,
            )
            ctx.exit(1)
