"""A ``pipeline train`` killed with ``kill -9`` does not stay RUNNING: the next run on the
same store ends it FAILED with its reason, and ``--resume`` goes on from its last periodic
checkpoint. Real processes, a real MLflow SQLite store."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from mlflow import MlflowClient

from pipeline.tracking.processes import Worker, is_dead
from pipeline.training.dead_runs import PROCESS_TAG
from tests.test_checkpoint_safety import STEPS, artifact_checkpoint, pipeline_train, run_id_of


@pytest.mark.slow
def test_a_killed_train_is_ended_failed_by_the_next_run_and_resumes(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    proc = pipeline_train(tmp_path, "dead")
    checkpoints = tmp_path / "mlartifacts" / "dead"
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if list(checkpoints.glob("*/artifacts/checkpoint/checkpoint.pt")):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it was killed"
    [run] = client.search_runs([client.get_experiment_by_name("dead").experiment_id])
    process = json.loads(run.data.tags[PROCESS_TAG])
    assert process["pid"] == proc.pid and not is_dead(Worker.from_attr(process))
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    dead_id = run.info.run_id
    assert client.get_run(dead_id).info.status == "RUNNING"  # nobody told MLflow
    assert is_dead(Worker.from_attr(process))

    # the next run of the experiment on this store ends it, with a reason and the way on
    other = pipeline_train(tmp_path, "dead")
    out, err = other.communicate(timeout=300)
    assert other.returncode == 0, err
    dead = client.get_run(dead_id)
    assert dead.info.status == "FAILED" and dead.info.end_time is not None
    reason = dead.data.tags["failure_reason"]
    assert reason == (
        f"its process {proc.pid} on {process['host']} died without ending the run (killed?); "
        f"resume it with pipeline train FILE --resume runs:/{dead_id}"
    )
    assert f"note: run {dead_id} was left RUNNING: {reason}" in err
    assert client.get_run(run_id_of(out)).info.status == "FINISHED"

    # and --resume goes on from its last periodic checkpoint
    step = artifact_checkpoint(client, dead_id, tmp_path / "dead-checkpoint")["step"]
    assert 10 <= step < STEPS
    resumed = pipeline_train(tmp_path, "dead", "--resume", f"runs:/{dead_id}")
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    run = client.get_run(run_id_of(out))
    assert run.info.status == "FINISHED"
    history = client.get_metric_history(run.info.run_id, "loss/critic")
    assert min(m.step for m in history) > step  # it went on from the checkpoint


def test_a_live_process_and_another_hosts_process_are_not_dead():
    here = Worker.current()
    assert not is_dead(here)
    elsewhere = Worker("another-host", here.machine, 1, 0)
    assert not is_dead(elsewhere, here)  # its pids mean nothing here
    gone = subprocess.Popen([sys.executable, "-c", "pass"], env=dict(os.environ))
    gone.wait()
    assert is_dead(Worker(here.host, here.machine, gone.pid, None), here)
