"""What the tuner tells a progress display: the search starting, each evaluation's step of
a running trial, each trial ending with the best value so far. This base draws nothing
(no terminal, a worker process); the CLI draws it as a tqdm bar
(:mod:`pipeline.cli.progress`)."""

from __future__ import annotations


class TuneProgress:
    """A progress display of ``pipeline tune`` that shows nothing; subclass to draw it."""

    def start(self, n_trials: int | None, timeout: float | None, metric: str) -> None:
        """The search begins: ``n_trials`` (None: until ``timeout`` seconds)."""

    def step(self, trial: int, step: int) -> None:
        """Trial ``trial`` evaluated at generator step ``step``."""

    def trial_done(self, trial: int, best: float | None) -> None:
        """Trial ``trial`` ended; ``best``: the study's best value now (None: none yet)."""

    def close(self) -> None:
        """The search ended (or stopped)."""
