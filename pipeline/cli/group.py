"""The ``pipeline`` group's failure handling: every failure ends in one ``error:`` line."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import click

from pipeline.errors import DEBUG_ENV, PipelineError, debug_wanted, one_line


class PipelineGroup(click.Group):
    """Turns every :class:`PipelineError` into one line on stderr and its exit status, and
    any other failure into one ``error:`` line too (exit 1): what ran out and what to do
    when the machine refused memory or disk, else the exception's type and first line.
    ``--debug`` or ``PIPELINE_DEBUG=1`` lets the traceback through instead. SIGTERM is heard
    as Ctrl-C for the whole command (:func:`sigterm_as_ctrl_c`)."""

    def invoke(self, ctx: click.Context):
        with sigterm_as_ctrl_c():
            return self._invoke_telling_failures(ctx)

    def _invoke_telling_failures(self, ctx: click.Context):
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


@contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """While inside, SIGTERM raises ``KeyboardInterrupt`` as Ctrl-C does, so a command
    stopped while it starts (a store being created, the study being opened) or between
    trials ends as Ctrl-C ends it (its runs closed, one line, exit 130) instead of dying
    mid-write. A training step installs its own handler on top (checkpoint, then stop:
    :func:`pipeline.training.interrupt.stop_on_signals`). Outside the main thread (a test's
    in-process runner on a worker thread) nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous if previous is not None else signal.SIG_DFL)
