"""Which worker processes are on a study now: the study's MLflow parent run is RUNNING while
any is, and FINISHED (or KILLED) when the last one leaves.

Each ``pipeline tune`` process registers itself (host, boot id and pid namespace, pid and
process start time: :class:`pipeline.stores.dead_trials.Worker`) in the study's system attribute
:data:`WORKERS_ATTR` when it joins and removes itself when it leaves, always under the
store's lock (:func:`pipeline.tracking.locks.store_lock`), so a join and a leave never
interleave. Entries whose process is gone on this host (``kill -9``, the OOM killer) are
dropped by whoever next joins or leaves. A dead process on *another* host cannot be judged
by pid: it is dropped when its running trial is found dead (Optuna's heartbeat on RDB
storages, :mod:`pipeline.stores.dead_trials`); one that died between two trials, or on a storage
without heartbeats, stays, and the parent stays RUNNING (see docs/scaling.md).

Call these only while holding the study's store lock.
"""

from __future__ import annotations

from typing import Any

from pipeline.stores.dead_trials import Worker, is_dead

#: the study system attribute holding the list of workers (their ``Worker.as_attr()``)
WORKERS_ATTR = "pipeline:workers"


def _read(study) -> list[Worker]:
    attrs = study._storage.get_study_system_attrs(study._study_id)
    workers = [Worker.from_attr(w) for w in attrs.get(WORKERS_ATTR, [])]
    return [w for w in workers if w is not None]


def _write(study, workers: list[Worker]) -> None:
    value: list[dict[str, Any]] = [w.as_attr() for w in workers]
    study._storage.set_study_system_attr(study._study_id, WORKERS_ATTR, value)


def _alive_others(study, me: Worker) -> list[Worker]:
    return [w for w in _read(study) if w != me and not is_dead(w, me)]


def join(study, me: Worker | None = None) -> list[Worker]:
    """Register ``me`` (default: this process); returns the other live workers."""
    me = me or Worker.current()
    others = _alive_others(study, me)
    _write(study, [*others, me])
    return others


def leave(study, me: Worker | None = None) -> bool:
    """Unregister ``me`` (and dead workers of this host); True when no live worker is left."""
    me = me or Worker.current()
    others = _alive_others(study, me)
    _write(study, others)
    return not others


def forget(study, dead: Worker) -> None:
    """Drop ``dead`` (a worker whose trial was found dead: by pid, or on another host by
    Optuna's heartbeat) from the list, so the parent can end without it."""
    _write(study, [w for w in _read(study) if w != dead])


def workers(study) -> list[Worker]:
    """The workers registered now (dead ones of this host included until pruned)."""
    return _read(study)
