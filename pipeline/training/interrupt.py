"""Ctrl-C and SIGTERM stop a training at the next generator-step boundary.

The first SIGINT or SIGTERM only sets a flag; the training loop reads it between two
generator steps, where nets, optimizers and RNGs are consistent, saves and logs a
checkpoint there and raises :class:`TrainingInterrupted` (a ``KeyboardInterrupt``, so
every caller that handled Ctrl-C before still does: the run ends KILLED, a tune trial
ends as Optuna records an interrupted trial). A second signal interrupts at once.

Python delivers signals to the main thread only, and only it may install handlers, so a
training in another thread (``pipeline tune --n-jobs``) installs none.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

#: the signals that ask a training to stop (Ctrl-C; what ``kill``, systemd, docker stop send)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class StopRequest:
    """Set by a signal handler, read by the training loop at step boundaries."""

    signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None


class TrainingInterrupted(KeyboardInterrupt):
    """The loop stopped at a step boundary on a signal, after saving its checkpoint; or,
    with ``finished``, the signal came after the last step and the run is complete (the
    caller still stops, as it would have on a plain Ctrl-C)."""

    def __init__(
        self,
        signum: int,
        step: int,
        run_id: str | None,
        note: str = "",
        *,
        finished: bool = False,
    ) -> None:
        self.signum = signum
        self.step = step
        self.run_id = run_id
        self.note = note
        self.finished = finished
        name = signal.Signals(signum).name
        where = f"after the last step ({step})" if finished else f"at step {step}"
        super().__init__(f"interrupted by {name} {where}{note}")


@contextmanager
def stop_on_signals(request: StopRequest) -> Iterator[None]:
    """While inside, the first SIGINT/SIGTERM sets ``request``; a second one raises
    ``KeyboardInterrupt`` at once. Outside the main thread: does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if request.requested:
            raise KeyboardInterrupt(f"signal {signum}")
        request.signum = signum
        sys.stderr.write(
            f"\n{signal.Signals(signum).name}: stopping after this step and logging a "
            "checkpoint; send it again to stop at once\n"
        )
        sys.stderr.flush()

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, old in previous.items():
            # None: the old handler was not installed from Python; the default is closest
            signal.signal(s, old if old is not None else signal.SIG_DFL)
