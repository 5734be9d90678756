"""``pipeline sync``: a run cut off from its tracking server, the server killed and started
again on the same store, and what the run kept locally sent to it. Real processes: a real
``mlflow server`` (SQLite backend), a real ``pipeline train`` killed off from it."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from mlflow.tracking import MlflowClient

from pipeline.training.sync import ARTIFACTS_SENT, METRICS_SENT
from tests.conftest import EXPERIMENTS, ROOT, killed_at_exit
from tests.test_tracking_server_loss import (  # noqa: F401
    _env,
    _wait_for_logged_run,
    server_root,
    start_endless,
    wait_for_training,
)


def pipeline(work, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=work,
        env=_env(PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_sync_sends_the_unsent_rows_and_files_and_ends_the_run(server_root, tmp_path):  # noqa: F811
    server = server_root()
    work = tmp_path / "work"
    work.mkdir()
    proc = start_endless("train", work, "--no-progress", "--tracking-uri", server.uri)
    try:
        run_id = _wait_for_logged_run(server.uri, proc)
        server.kill()
        proc.communicate(timeout=180)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 1
    folder = work / "gan-pipeline-unsent" / run_id
    assert (folder / "run.json").is_file()

    # the server is still down: one line, exit 1, the folder kept whole
    down = pipeline(work, "sync", "--tracking-uri", server.uri)
    assert down.returncode == 1 and "Traceback" not in down.stderr
    [line] = down.stderr.strip().splitlines()
    assert line.startswith("error: tracking: ") and "unreachable" in line
    assert (folder / "unsent_metrics.csv").is_file() and not (folder / METRICS_SENT).exists()

    server = server_root()  # back, on the same store
    client = MlflowClient(server.uri)
    assert client.get_run(run_id).info.status == "RUNNING"
    checkpoint_step = int(json.loads((folder / "run.json").read_text())["step"])
    before = {m.step for m in client.get_metric_history(run_id, "loss/critic")}
    assert max(before) < checkpoint_step  # the last rows never reached it

    sent = pipeline(work, "sync", "--tracking-uri", server.uri)
    assert sent.returncode == 0, sent.stderr
    assert f"run {run_id}: " in sent.stdout and "ended FAILED" in sent.stdout
    run = client.get_run(run_id)
    assert run.info.status == "FAILED"
    assert run.data.tags["failure_reason"].startswith("tracking server unreachable at step")
    assert run.data.tags["failure_reason"].endswith("sent by pipeline sync")
    after = [m.step for m in client.get_metric_history(run_id, "loss/critic")]
    assert set(after) == set(range(1, checkpoint_step + 1))  # every step, none lost
    assert len(after) == len(set(after))  # and none twice
    artifacts = {a.path for a in client.list_artifacts(run_id)}
    assert {"checkpoint", "config.yaml", "samples.npy"} <= artifacts
    assert not folder.exists() and not (folder.parent / ARTIFACTS_SENT).exists()

    # the run resumes from the checkpoint now on the server
    more = pipeline(
        work, "train", str(EXPERIMENTS / "gan_ring8.yaml"), "--no-progress", "--tracking-uri",
        server.uri, "--resume", f"runs:/{run_id}", "-o", f"train.steps={checkpoint_step + 5}",
        "-o", "train.log_every=25", "-o", "train.eval_every=300", "-o", "train.eval_samples=500",
        "-o", "model.g_width=32", "-o", "model.d_width=32",
    )  # fmt: skip
    assert more.returncode == 0, more.stderr
    assert f"finished {checkpoint_step + 5} steps" in more.stdout

    again = pipeline(work, "sync", "--tracking-uri", server.uri)
    assert again.returncode == 0 and again.stdout.startswith("nothing to send")


def test_a_folder_whose_run_is_not_on_the_store_is_left_and_named(tmp_path):
    folder = tmp_path / "gan-pipeline-unsent" / "0123456789abcdef"
    folder.mkdir(parents=True)
    record = {"run_id": "0123456789abcdef", "tracking_uri": "http://gone:5000", "step": 3}
    (folder / "run.json").write_text(json.dumps(record | {"steps": 10}))
    (folder / "unsent_metrics.csv").write_text("key,value,step\nloss/critic,0.5,3\n")
    done = pipeline(tmp_path, "sync", "--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db")
    assert done.returncode == 1
    line = done.stderr.strip().splitlines()[-1]
    assert line.startswith(f"left {folder.relative_to(tmp_path)}: its run is not on sqlite:///")
    assert "http://gone:5000" in line and (folder / "unsent_metrics.csv").is_file()


@pytest.mark.slow
def test_a_tune_cut_off_from_its_server_ends_in_one_line_and_keeps_the_trial(
    server_root,  # noqa: F811
    tmp_path,
):
    server = server_root()
    work = tmp_path / "work"
    work.mkdir()
    tune = ["--n-trials", "2", "--tracking-uri", server.uri, "-o", "tune.objective={metric: w1}"]
    proc = start_endless("tune", work, *tune)
    with killed_at_exit(proc):
        wait_for_training(server.uri, proc)  # a trial's run logs per-step metrics
        server.kill()
        _, err = proc.communicate(timeout=180)
    assert proc.returncode == 1 and "Traceback" not in err, err
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: tracking: MLflow server ") and line.count("unreachable") == 1
    [folder] = (work / "gan-pipeline-unsent").iterdir()
    assert f"kept in {folder}/" in line and (folder / "checkpoint.pt").is_file()

    server = server_root()
    sent = pipeline(work, "sync", "--tracking-uri", server.uri)
    assert sent.returncode == 0, sent.stderr
    assert MlflowClient(server.uri).get_run(folder.name).info.status == "FAILED"
