"""Progress in a terminal: ``pipeline tune``'s bar over the trials and ``pipeline compare``'s
over the variants, each a tqdm bar; lines printed meanwhile go above it. Without a terminal
(output to a file or a pipe, a worker process) the commands print plain lines only."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

import click

from pipeline.tuning.progress import TuneProgress


def in_terminal() -> bool:
    """Whether stdout is a terminal (a bar is drawn only then)."""
    return sys.stdout.isatty()


class Lines:
    """Prints a line; above the bar while one is drawn."""

    bar: Any = None

    def write(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text)
        else:
            click.echo(text)


class TuneBar(Lines, TuneProgress):
    """``pipeline tune``: trials done of ``--n-trials`` (or the time left of ``--timeout``),
    the best value so far and the running trials' steps."""

    def __init__(self, file: IO[str] | None = None) -> None:
        self.file = file  # where tqdm draws (None: stderr)
        self.best: float | None = None
        self.metric = ""
        self.running: dict[int, int] = {}
        self.deadline: float | None = None

    def start(self, n_trials: int | None, timeout: float | None, metric: str) -> None:
        from tqdm import tqdm

        self.metric = metric
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.bar = tqdm(
            total=n_trials, desc="trials", unit="trial", dynamic_ncols=True, file=self.file
        )
        self._show()

    def step(self, trial: int, step: int) -> None:
        self.running[trial] = step
        self._show()

    def trial_done(self, trial: int, best: float | None) -> None:
        self.running.pop(trial, None)
        self.best = best
        if self.bar is not None:
            self.bar.update(1)
        self._show()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def postfix(self) -> str:
        """``best w1 0.0123 · trial 4 step 300 · 120 s left``."""
        parts = [] if self.best is None else [f"best {self.metric} {self.best:.4g}"]
        parts += [f"trial {t} step {s}" for t, s in sorted(self.running.items())]
        if self.deadline is not None:
            parts.append(f"{max(0.0, self.deadline - time.monotonic()):.0f} s left")
        return " · ".join(parts)

    def _show(self) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(self.postfix())


class CompareBar(Lines):
    """``pipeline compare``: variants done of all, and the variant, phase and seed now."""

    def __init__(self, variants: list[str], file: IO[str] | None = None) -> None:
        from tqdm import tqdm

        self.variants = variants
        self.bar = tqdm(
            total=len(variants), desc="compare", unit="variant", dynamic_ncols=True, file=file
        )

    def phase(self, variant: str, phase: str, seed: int | None = None) -> None:
        """``variant`` is at ``phase`` (``tuning``, ``seed``, ``report``) of ``seed``."""
        if self.bar is None:
            return
        if variant in self.variants:
            self.bar.n = self.variants.index(variant)
        else:  # the report: every variant done
            self.bar.n = len(self.variants)
        self.bar.set_description(variant)
        self.bar.set_postfix_str(phase if seed is None else f"{phase} {seed}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
