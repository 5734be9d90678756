"""``pipeline sync``: a lost tracking server's unsent data, sent once it is back.

A run whose server went away keeps what it made in ``<unsent_dir>/<run_id>/``
(:mod:`pipeline.training.unsent`). Sending it: the metric rows of ``unsent_metrics.csv``
in MLflow batches (``log_batch``, at most 1,000 metrics a call, MLflow's limit), the files
as the run's artifacts in their usual places (``checkpoint.pt`` under ``checkpoint/``, so
``--resume runs:/<run_id>`` works), then the run ends with its true status: FINISHED when
every step was trained, KILLED when Ctrl-C or SIGTERM stopped it, FAILED otherwise, its
``failure_reason`` the server's loss. The folder is removed once all of it is on the server.

Each part leaves a marker in the folder once sent (``.metrics-sent``, ``.artifacts-sent``),
so a sync stopped half-way and run again sends nothing twice.
"""

from __future__ import annotations

import csv
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from pipeline.tracking.client import TrackingSettings, client_for
from pipeline.tracking.http import display_uri, reaching

#: MLflow's ``log_batch`` limit on metrics per call (its REST API documentation)
BATCH_METRICS = 1000
#: files of the folder that are bookkeeping, not the run's artifacts
NOT_ARTIFACTS = {"run.json", "unsent_metrics.csv", "checkpoint.pt"}
METRICS_SENT = ".metrics-sent"
ARTIFACTS_SENT = ".artifacts-sent"


@dataclass(frozen=True)
class Synced:
    """One folder's outcome: sent and ended, or left alone with the reason."""

    run_id: str
    folder: Path
    status: str | None = None  # the status the run ended with; None: left alone
    metric_rows: int = 0
    files: int = 0
    left_because: str = ""


def unsent_folders(unsent_dir: str | Path) -> list[Path]:
    """The run folders under ``unsent_dir`` (each with its ``run.json``), oldest first."""
    root = Path(unsent_dir)
    if not root.is_dir():
        return []
    found = [p for p in root.iterdir() if (p / "run.json").is_file()]
    return sorted(found, key=lambda p: (p / "run.json").stat().st_mtime)


def true_status(record: dict) -> str:
    """The status the run would have ended with had the server stayed: ``run.json``'s
    ``true_status``; for folders written before it was recorded, FINISHED when every step
    was trained, else FAILED."""
    if record.get("true_status"):
        return str(record["true_status"])
    return "FINISHED" if int(record["step"]) >= int(record["steps"]) else "FAILED"


def sync_folder(folder: Path, settings: TrackingSettings) -> Synced:
    """Send ``folder``'s metrics and files to its run and end the run; left alone (with the
    reason) when the run is not on ``settings``' store (the server may be back on another
    address: the run id, not the URL, says it is the same store). Raises
    :class:`~pipeline.tracking.http.TrackingUnavailable` while the server is still down."""
    record = json.loads((folder / "run.json").read_text())
    run_id = str(record["run_id"])
    here = display_uri(settings.tracking_uri)
    from mlflow.entities import Metric
    from mlflow.exceptions import MlflowException

    client = client_for(settings)
    with reaching(settings.tracking_uri):
        try:
            client.get_run(run_id)
        except MlflowException as exc:
            if "not found" not in str(exc).lower() and "does not exist" not in str(exc).lower():
                raise
            # a server back on another address is the same store when it has the run
            return Synced(
                run_id,
                folder,
                left_because=f"its run is not on {here} (it was logged to "
                f"{record.get('tracking_uri')}): pass that server's --tracking-uri",
            )
        rows = 0
        if not (folder / METRICS_SENT).exists():
            now = int(time.time() * 1000)
            with open(folder / "unsent_metrics.csv", newline="") as f:
                table = [(r["key"], float(r["value"]), int(r["step"])) for r in csv.DictReader(f)]
            # a batch that timed out may have landed all the same: what the server has
            # already (the same key, step and value) is not sent twice
            there = {
                (key, m.step, m.value)
                for key in {key for key, _, _ in table}
                for m in client.get_metric_history(run_id, key)
            }
            metrics = [Metric(k, v, now, step) for k, v, step in table if (k, step, v) not in there]
            for start in range(0, len(metrics), BATCH_METRICS):
                client.log_batch(run_id, metrics=metrics[start : start + BATCH_METRICS])
            rows = len(metrics)
            (folder / METRICS_SENT).touch()
        files = 0
        if not (folder / ARTIFACTS_SENT).exists():
            for path in sorted(folder.iterdir()):
                if path.name in NOT_ARTIFACTS or path.name.startswith("."):
                    continue
                if path.is_dir():
                    client.log_artifacts(run_id, str(path), path.name)
                    files += sum(1 for p in path.rglob("*") if p.is_file())
                else:
                    client.log_artifact(run_id, str(path))
                    files += 1
            if (folder / "checkpoint.pt").is_file():
                client.log_artifact(run_id, str(folder / "checkpoint.pt"), "checkpoint")
                files += 1
            (folder / ARTIFACTS_SENT).touch()
        status = true_status(record)
        if status != "FINISHED":
            reason = record.get("failure_reason") or "tracking server unreachable"
            client.set_tag(run_id, "failure_reason", f"{reason}; its data sent by pipeline sync")
        client.set_tag(run_id, "pipeline.synced", time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        client.set_terminated(run_id, status)
    shutil.rmtree(folder)
    return Synced(run_id, folder, status, rows, files)
