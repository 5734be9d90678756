"""``pipeline tune --workers N``: trials split, seeds, threads, GPUs; end to end with real
worker processes on the default journal file; Ctrl-C stops every worker and leaves no
trial RUNNING."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import click
import optuna
import pytest
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from pipeline.cli.commands import main
from pipeline.errors import ConfigError
from pipeline.stores.study_workers import WORKERS_ATTR
from pipeline.tuning.workers import (
    command_line,
    parse_gpus,
    split_trials,
    worker_commands,
    worker_devices,
)
from tests.conftest import EXPERIMENTS, TINY_SMALL, interrupt_once_trials_start


def test_trials_are_split_with_the_remainder_to_the_first_workers():
    assert split_trials(7, 3) == [3, 2, 2]
    assert split_trials(12, 3) == [4, 4, 4]
    assert split_trials(2, 3) == [1, 1]  # no worker without a trial
    assert split_trials(None, 2) == [None, None]  # --timeout alone: each runs until it


def test_gpus_are_dealt_round_robin_and_checked():
    assert parse_gpus("0,1") == [0, 1]
    assert parse_gpus(None) is None
    for bad in ("a", "-1", ","):
        with pytest.raises(ConfigError, match="--gpus"):
            parse_gpus(bad)
    assert worker_devices(3, "cpu", None) == [None] * 3
    assert worker_devices(3, "cuda:1", None) == [None] * 3
    with pytest.raises(ConfigError, match="conflicts"):
        worker_devices(3, "cpu", [0])
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count:
        assert worker_devices(3, "auto", [0]) == ["cuda:0"] * 3
        assert worker_devices(3, "auto", None) == [f"cuda:{i % count}" for i in range(3)]
    else:
        assert worker_devices(3, "auto", None) == [None] * 3
        with pytest.raises(ConfigError, match="no CUDA device 0 \\(this machine has 0\\)"):
            worker_devices(2, "auto", [0])


def test_each_worker_gets_its_share_seed_and_device():
    commands = worker_commands(["tune", "x.yaml"], [2, 1], 10, ["cuda:0", None])
    first = ["--worker-index", "0", "--n-trials", "2", "--seed", "10", "--device", "cuda:0"]
    assert commands[0][-8:] == first
    assert commands[1][-6:] == ["--worker-index", "1", "--n-trials", "1", "--seed", "11"]
    assert commands[0][:3] == [sys.executable, "-m", "pipeline.cli"]


def test_the_command_line_is_rebuilt_from_the_parsed_options():
    seen = {}

    @click.group()
    @click.option("--plugin", multiple=True)
    @click.option("--no-autoload", is_flag=True)
    def group(plugin, no_autoload):
        pass

    @group.command()
    @click.argument("file")
    @click.option("-o", "--override", multiple=True)
    @click.option("--n-trials", type=int)
    @click.option("--storage", default=None)
    def tune(file, override, n_trials, storage):
        seen["args"] = command_line(click.get_current_context(), skip=("n_trials",))

    argv = ["--plugin", "a.py", "--no-autoload", "tune", "f.yaml", "-o", "x=1", "-o", "y=2"]
    result = CliRunner().invoke(group, [*argv, "--n-trials", "3"])
    assert result.exit_code == 0, result.output
    overrides = ["-o", "x=1", "-o", "y=2"]
    assert seen["args"] == ["--plugin", "a.py", "--no-autoload", "tune", "f.yaml", *overrides]


def _args(store, name: str, n_trials: int, *overrides: str) -> list[str]:
    args = [
        "tune",
        str(EXPERIMENTS / "wgan_gp_grid25.yaml"),
        "--workers",
        "2",
        "--n-trials",
        str(n_trials),
        "--sampler",
        "random",
        "--seed",
        "0",
        "--pruner",
        "none",
        "--study-name",
        name,
        "--experiment-name",
        name,
        "--tracking-uri",
        store.tracking_uri,
    ]
    for o in overrides:
        args += ["-o", o]
    return args


def _journal(store) -> optuna.storages.JournalStorage:
    folder = Path(store.tracking_uri.removeprefix("sqlite:///")).parent
    backend = optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal"))
    return optuna.storages.JournalStorage(backend)


def _runs(store, name: str):
    client = MlflowClient(store.tracking_uri)
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("pipeline.role") == "study"]
    return parents, [r for r in runs if r.data.tags.get("pipeline.role") != "study"]


@pytest.mark.slow
def test_two_workers_end_to_end(shared_store, monkeypatch):
    name = f"workers-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = CliRunner().invoke(main, _args(shared_store, name, 3, *TINY_SMALL))
    assert result.exit_code == 0, result.output
    assert "2 workers on study" in result.output and "(trials each: 2, 1;" in result.output
    storage = _journal(shared_store)
    study = optuna.load_study(study_name=name, storage=storage)
    assert [t.state.name for t in study.trials] == ["COMPLETE"] * 3
    assert sorted(t.number for t in study.trials) == [0, 1, 2]
    # two processes ran them (seeds 0 and 1: not the same parameters twice)
    pids = {t.user_attrs["worker"]["pid"] for t in study.trials}
    assert len(pids) == 2 and os.getpid() not in pids
    assert len({tuple(t.params.items()) for t in study.trials}) == 3
    assert storage.get_study_system_attrs(study._study_id)[WORKERS_ATTR] == []
    parents, children = _runs(shared_store, name)
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 3
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parents[0].info.run_id}
    assert "3 trials in the study (3 complete)" in result.output


@pytest.mark.slow
def test_ctrl_c_stops_every_worker_and_leaves_no_trial_running(shared_store, tmp_path):
    name = f"workers-int-{uuid.uuid4().hex[:8]}"
    # trials long enough to be interrupted in the middle (each evaluation ~1 s here)
    budget = ["train.steps=100000", "train.eval_every=50", "train.eval_samples=200"]
    budget += ["model.g_width=16", "model.d_width=16", "train.batch_size=32"]
    exe = os.path.join(os.path.dirname(sys.executable), "pipeline")
    env = dict(os.environ, OMP_NUM_THREADS="1")
    proc = subprocess.Popen(
        [exe, *_args(shared_store, name, 4, *budget)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    out = interrupt_once_trials_start(proc, name, _journal(shared_store))
    assert proc.returncode == 130, out
    assert "interrupted: every worker stopped" in out
    study = optuna.load_study(study_name=name, storage=_journal(shared_store))
    states = sorted(t.state.name for t in study.trials)
    assert states == ["FAIL", "FAIL"], out  # interrupted, and no third trial started
    parents, children = _runs(shared_store, name)
    assert [r.info.status for r in children] == ["KILLED", "KILLED"]
    assert len(parents) == 1 and parents[0].info.status == "KILLED"
    storage = _journal(shared_store)
    assert storage.get_study_system_attrs(study._study_id)[WORKERS_ATTR] == []
