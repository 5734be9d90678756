"""One ``pipeline compare`` per comparison and store at a time.

Two processes started on the same comparison would both resume its studies with the whole
budget left (issue 23: 4 trials for a budget of 2, the same parameters twice, then a
crash on a duplicate tag). The comparison takes its own lock on its Optuna store
(:func:`pipeline.tracking.locks.store_lock`, purpose ``comparison-<name>``: a file lock
beside a journal or SQLite file, a PostgreSQL advisory lock, a Redis lock) and holds it for
as long as it runs; a second one is refused at once with one line, before it touches a
study or a run. Its ``--workers`` are its own children and take no such lock.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from pipeline.errors import PipelineError
from pipeline.tracking.client import TrackingSettings


class ComparisonBusy(PipelineError):
    """The comparison is already running in another process on the same store."""

    exit_code = 1


@contextmanager
def comparison_lock(name: str, storage: str | None, tracking: TrackingSettings) -> Iterator[None]:
    """Hold comparison ``name``'s lock on its Optuna store (``storage``, as ``--storage``
    gives it) while the block runs; :class:`ComparisonBusy` when another process holds it."""
    from pipeline.stores.storage import parse_storage
    from pipeline.tracking.locks import LockBusy, store_lock

    location = parse_storage(storage, tracking)
    location.check()
    try:
        with store_lock(location.url, f"comparison-{name}", wait=False):
            yield
    except LockBusy:
        raise ComparisonBusy(
            f"comparison {name!r} is running in another process on this store; wait for it "
            f"to end (a comparison resumes where it stopped), or start it with --workers N "
            f"to run it in several processes"
        ) from None
