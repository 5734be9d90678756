"""Trials whose worker process died: found, failed, retried once with the same params.

A ``pipeline tune`` worker killed mid-trial (``kill -9``, OOM killer, a lost machine)
never tells Optuna: its trial stays RUNNING and its MLflow run RUNNING. Two detectors
turn such a trial into FAIL, and both hand it to one :class:`RetryDeadTrial` callback
(Optuna's :class:`~optuna.storages.RetryHeartbeatStaleTrialCallback`, so a retry carries
Optuna's own ``failed_trial`` / ``retry_history`` system attrs), which enqueues the
retry and ends the dead MLflow run as FAILED with a ``failure_reason`` tag:

- **The worker's process** (every storage, one host). Each trial records who runs it
  (:class:`Worker`: host, boot id and pid namespace, pid and the process's start time, so
  a recycled pid is not taken for the old process). A starting worker, and every worker
  after each trial, fails the RUNNING trials whose process on *this* host is gone. Trials
  of other hosts are never judged this way: their pids mean nothing here. Optuna 5.0's
  journal file has no heartbeat, so this is its only detector; on PostgreSQL it finds a
  local dead worker at once instead of after the grace period.
- **Optuna's heartbeat** (RDB storages: PostgreSQL, MySQL, SQLite URLs), for workers on
  other machines: :data:`HEARTBEAT_INTERVAL_S`, :data:`GRACE_PERIOD_S`, and Optuna's
  ``fail_stale_trials`` before every trial and here.

Only one worker retries a given dead trial: the FAIL transition goes through
``storage.set_trial_state_values``, which on the journal (one totally ordered log) and on
PostgreSQL (``SELECT … FOR UPDATE``) raises ``UpdateFinishedTrialError`` for every worker
but the first. (SQLite URLs do not lock the row; two workers starting in the same
instant could both win there.)

Limits: a worker killed between Optuna's ``ask`` and the first line of the objective has
recorded no process, so only a heartbeat can find its trial (the journal has none). A
worker judges heartbeats with its own grace period: every worker of a study must run this
version (an older one beat every 60 s and would look dead after 30 s). A host is its
name plus boot id plus pid namespace, so two containers with one host name but separate
pid namespaces never judge each other's trials, and neither does a rebooted machine
judge the trials of its previous boot (the heartbeat does, on RDB storages).
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import RetryHeartbeatStaleTrialCallback
from optuna.storages._heartbeat import is_heartbeat_enabled
from optuna.trial import FrozenTrial, TrialState

from pipeline.tracking.processes import Worker, is_dead, process_start

if TYPE_CHECKING:
    from pipeline.tracking.client import TrackingSettings

__all__ = ["Worker", "is_dead", "process_start"]  # where the tests and workers find them

#: Seconds between heartbeats of a running trial (RDB storages). Optuna's docs use 60;
#: 10 s is one tiny UPDATE per trial every 10 s — nothing next to a trial's own writes
#: (a metric batch per ``log_every`` steps) — and bounds how long a worker on another
#: machine can be dead unnoticed (see :data:`GRACE_PERIOD_S`).
HEARTBEAT_INTERVAL_S = 10
#: A trial without a heartbeat for this long is stale. Three intervals, so that one or
#: two heartbeats delayed by a busy database or a paused VM do not fail a live trial
#: (Optuna's default is two), yet a dead remote worker is failed within 30 s plus the
#: time until some worker starts its next trial (local dead workers: at once, by pid).
GRACE_PERIOD_S = 30
#: What ``open_storage`` gives ``RDBStorage``.
RDB_HEARTBEAT = {"heartbeat_interval": HEARTBEAT_INTERVAL_S, "grace_period": GRACE_PERIOD_S}
#: A dead trial is retried once: a second death of the same params is more likely the
#: trial's fault (memory) than bad luck, and retrying it for ever would loop.
MAX_RETRY = 1

WORKER_ATTR = "worker"
FAIL_REASON_ATTR = "fail_reason"
RETRY_OF_ATTR = "retry_of"
RETRY_REASON_ATTR = "retry_reason"


def mark_worker(trial: optuna.trial.Trial) -> None:
    """Record this process as the one running ``trial`` (first thing in the objective)."""
    trial.set_user_attr(WORKER_ATTR, Worker.current().as_attr())


def _retry_history(trial: FrozenTrial) -> list[int]:
    return list(trial.system_attrs.get("retry_history", []))


def _heartbeat_reason(study: optuna.Study) -> str:
    grace = getattr(study._storage, "grace_period", None) or GRACE_PERIOD_S
    return f"no heartbeat from its worker for over {grace} s (worker presumed dead)"


class RetryDeadTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry callback, plus: the dead MLflow run ends FAILED with the reason, the
    retry carries ``retry_of`` (and none of the dead trial's other user attrs: its MLflow
    run id, its worker), and a line is echoed."""

    def __init__(
        self,
        tracking: TrackingSettings | None,
        echo: Callable[[str], None] | None = None,
        max_retry: int = MAX_RETRY,
        on_dead_worker: Callable[[optuna.Study, Worker], None] | None = None,
    ) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            super().__init__(max_retry=max_retry)
        self.tracking = tracking
        self.echo = echo or (lambda line: None)
        #: told about the worker of each dead trial (the study's worker list drops it)
        self.on_dead_worker = on_dead_worker
        #: numbers of the dead trials this callback handled, in order
        self.handled: list[int] = []

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.handled.append(trial.number)
        reason = trial.user_attrs.get(FAIL_REASON_ATTR) or _heartbeat_reason(study)
        clean = copy.deepcopy(trial)
        clean.user_attrs = {RETRY_OF_ATTR: trial.number, RETRY_REASON_ATTR: reason}
        super().__call__(study, clean)
        waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        retry = next((t for t in waiting if _retry_history(t)[-1:] == [trial.number]), None)
        line = f"trial {trial.number:4d}  FAIL     {reason}; "
        line += (
            f"retried as trial {retry.number}"
            if retry is not None
            else f"not retried again (it retried trial {_retry_history(trial)[-1]})"
        )
        self.echo(line)
        self._end_run(trial, reason, retry.number if retry is not None else None)
        worker = Worker.from_attr(trial.user_attrs.get(WORKER_ATTR))
        if self.on_dead_worker is not None and worker is not None:
            self.on_dead_worker(study, worker)

    def _end_run(self, trial: FrozenTrial, reason: str, retry: int | None) -> None:
        run_id = trial.user_attrs.get("mlflow_run_id")
        if self.tracking is None or not run_id:
            return
        from pipeline.tracking.client import client_for

        try:
            client = client_for(self.tracking)
            client.set_tag(run_id, "optuna.state", "FAIL")
            if retry is not None:
                client.set_tag(run_id, "optuna.retried_by", str(retry))
            if client.get_run(run_id).info.status == "RUNNING":
                client.set_tag(run_id, "failure_reason", reason[:5000])
                client.set_terminated(run_id, status="FAILED")
        except Exception as exc:  # the retry is queued already; say what was not recorded
            self.echo(f"  could not end its MLflow run {run_id}: {type(exc).__name__}: {exc}")


def fail_dead_trials(study: optuna.Study, callback: RetryDeadTrial) -> list[int]:
    """Fail, and retry through ``callback``, every RUNNING trial whose worker is dead:
    stale heartbeats (RDB storages) and processes gone on this host. Returns the numbers
    of the trials this call failed.

    ``callback`` also becomes the storage's heartbeat callback, so the stale trials Optuna
    fails before each trial of ``study.optimize`` get the same treatment (the storage is
    built from a URL alone; the callback needs this invocation's MLflow settings).
    """
    storage = study._storage
    handled = len(callback.handled)
    if is_heartbeat_enabled(storage):
        # a study wraps its RDBStorage in Optuna's cache, which asks the RDBStorage
        backend = getattr(storage, "_backend", storage)
        backend.heartbeat_stale_trial_callback = callback
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
    here = Worker.current()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = Worker.from_attr(trial.user_attrs.get(WORKER_ATTR))
        if worker is None or not is_dead(worker, here):
            continue
        reason = f"worker {worker.describe()} died while running the trial"
        try:
            storage.set_trial_user_attr(trial._trial_id, FAIL_REASON_ATTR, reason)
            if not storage.set_trial_state_values(trial._trial_id, TrialState.FAIL):
                continue
        except UpdateFinishedTrialError:
            continue  # another worker failed it first, and retries it
        callback(study, storage.get_trial(trial._trial_id))
    return callback.handled[handled:]


def dead_running_ids(study: optuna.Study) -> set[int]:
    """Trial ids still RUNNING in the storage whose worker is dead (read only)."""
    storage = study._storage
    here = Worker.current()
    dead = {
        t._trial_id
        for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if (w := Worker.from_attr(t.user_attrs.get(WORKER_ATTR))) is not None and is_dead(w, here)
    }
    if is_heartbeat_enabled(storage):
        dead |= set(storage._get_stale_trial_ids(study._study_id))
    return dead


def state_counts(study: optuna.Study) -> dict[str, int]:
    """Trials per state name; RUNNING trials whose worker is dead count as ``DEAD``."""
    counts: dict[str, int] = {}
    running: set[int] = set()
    for t in study.get_trials(deepcopy=False):
        counts[t.state.name] = counts.get(t.state.name, 0) + 1
        if t.state == TrialState.RUNNING:
            running.add(t._trial_id)
    dead = len(dead_running_ids(study) & running)  # one that ended meanwhile is not dead
    if dead:
        counts["RUNNING"] -= dead
        if not counts["RUNNING"]:
            del counts["RUNNING"]
        counts["DEAD"] = dead
    return counts
