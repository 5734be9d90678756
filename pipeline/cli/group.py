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
        passive_openmp_waits()
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


def passive_openmp_waits() -> None:
    """Let torch's OpenMP threads sleep when they wait, in the pipeline's processes only
    (``OMP_WAIT_POLICY=PASSIVE``, unless the user set it or ``GOMP_SPINCOUNT``).

    GNU libgomp, the OpenMP runtime of torch's Linux wheels, lets a thread that waits at the
    end of a parallel region spin ``GOMP_SPINCOUNT`` times (300,000 when the policy is
    unset; its manual, "OMP_WAIT_POLICY" and "GOMP_SPINCOUNT") before it sleeps. A GAN of
    this size runs thousands of short parallel regions a second, so a thread whose partner
    was descheduled by another process spins through its slice instead of giving the core
    back: measured here (benchmarks/omp_wait.py, docs/speed.md), two threads beside busy
    cores took 2-3x the time they take with the passive policy. It must be set before
    libgomp starts (torch's import): the commands import torch lazily, after this; worker
    processes inherit it."""
    import os

    if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
