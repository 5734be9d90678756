"""Training runs whose process died (``kill -9``, the OOM killer, a crash of the machine's
power) are ended FAILED by the next run started on the same store and host.

A killed ``pipeline train`` never tells MLflow: its run would stay RUNNING for ever. Every
run records its process (:class:`pipeline.tracking.processes.Worker`) in the tag
:data:`PROCESS_TAG`; before a new run starts, :func:`end_dead_runs` looks at the
experiment's RUNNING runs and ends those whose process on this host is gone, FAILED, with a
``failure_reason`` that says what happened and how to go on from the last periodic
checkpoint (``train.checkpoint_every``). Tuning trials are left to their study
(:mod:`pipeline.stores.dead_trials` fails, retries and ends them with the trial), and runs of
other hosts are never judged: their pids mean nothing here.
"""

from __future__ import annotations

import json
import sys

from pipeline.tracking.client import ROLE_TAG, TrackingSettings, client_for
from pipeline.tracking.processes import Worker, is_dead

PROCESS_TAG = "pipeline.process"


def process_tag() -> dict[str, str]:
    """The tag that records this process on a run."""
    return {PROCESS_TAG: json.dumps(Worker.current().as_attr())}


def end_dead_runs(tracking: TrackingSettings, experiment_name: str) -> list[str]:
    """End FAILED the RUNNING runs of ``experiment_name`` (not trials) whose process on this
    host is gone; returns their ids (and says so on stderr, one line each)."""
    client = client_for(tracking)
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return []
    here = Worker.current()
    ended = []
    for run in client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'"):
        tags = run.data.tags
        if tags.get(ROLE_TAG) == "trial" or PROCESS_TAG not in tags:
            continue
        try:
            worker = Worker.from_attr(json.loads(tags[PROCESS_TAG]))
        except ValueError:
            worker = None
        if worker is None or not is_dead(worker, here):
            continue
        run_id = run.info.run_id
        has_checkpoint = any(a.path == "checkpoint" for a in client.list_artifacts(run_id))
        then = (
            f"resume it with pipeline train FILE --resume runs:/{run_id}"
            if has_checkpoint
            else "it logged no checkpoint to resume from (train.checkpoint_every)"
        )
        reason = f"its {worker.describe()} died without ending the run (killed?); {then}"
        client.set_tag(run_id, "failure_reason", reason)
        client.set_terminated(run_id, status="FAILED")
        print(f"note: run {run_id} was left RUNNING: {reason}", file=sys.stderr)
        ended.append(run_id)
    return ended


def end_dead_runs_quietly(tracking: TrackingSettings, experiment_name: str) -> None:
    """:func:`end_dead_runs` as housekeeping before a run starts: a store that cannot be
    searched now is left as it is (the run's own start then reports what is wrong)."""
    try:
        end_dead_runs(tracking, experiment_name)
    except Exception:
        pass
