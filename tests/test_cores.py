"""The cores the pipeline uses by default: affinity and cgroup quotas read, one 1-thread
worker per usable core for tune, the user's OMP_NUM_THREADS and --workers kept."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import optuna
import pytest
import torch
from click.testing import CliRunner

from pipeline.cli.commands import main
from pipeline.training.cores import (
    affinity_cores,
    cgroup_cores,
    default_workers,
    set_torch_threads,
    threads_per_process,
    usable_cores,
    user_threads,
)
from tests.conftest import EXPERIMENTS, TINY_SMALL


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_cgroup_v2_quota_is_the_tightest_on_the_path_to_the_root(tmp_path):
    proc = tmp_path / "proc-cgroup"
    proc.write_text("0::/jobs/one\n")
    root = tmp_path / "cg"
    _write(root / "cpu.max", "max 100000\n")
    _write(root / "jobs" / "cpu.max", "150000 100000\n")  # docker --cpus 1.5
    _write(root / "jobs" / "one" / "cpu.max", "max 100000\n")
    assert cgroup_cores(root, proc) == 1.5
    _write(root / "jobs" / "one" / "cpu.max", "50000 100000\n")
    assert cgroup_cores(root, proc) == 0.5
    _write(root / "jobs" / "cpu.max", "max 100000\n")
    _write(root / "jobs" / "one" / "cpu.max", "max 100000\n")
    assert cgroup_cores(root, proc) is None  # no quota anywhere


def test_cgroup_v1_quota_over_period(tmp_path):
    proc = tmp_path / "proc-cgroup"
    proc.write_text("4:memory:/x\n2:cpu,cpuacct:/\n0::/\n")
    root = tmp_path / "cg"
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "-1\n")
    _write(root / "cpu,cpuacct" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cores(root, proc) is None
    _write(root / "cpu,cpuacct" / "cpu.cfs_quota_us", "300000\n")
    assert cgroup_cores(root, proc) == 3.0
    assert cgroup_cores(root, tmp_path / "absent") is None  # no cgroup file: no quota


def test_usable_cores_are_the_affinity_capped_by_the_quota():
    quota = cgroup_cores()
    expected = affinity_cores() if quota is None else min(affinity_cores(), max(1, int(quota)))
    assert usable_cores() == expected >= 1
    assert affinity_cores() == len(os.sched_getaffinity(0))


def test_user_threads_are_read_as_libgomp_reads_them(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert user_threads() is None
    for value, expected in [("3", 3), ("2,1", 2), (" 4 ", 4), ("0", None), ("many", None)]:
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        assert user_threads() == expected, value


def test_one_one_thread_worker_per_core_unless_the_user_set_threads(monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert [default_workers(cores=c) for c in (1, 2, 4, 16)] == [1, 2, 4, 16]
    assert default_workers(n_jobs=2, cores=4) == 2  # two trials as threads in each
    assert threads_per_process(4, cores=4) == 1
    assert threads_per_process(1, cores=4) == 4  # one run: every core
    assert threads_per_process(8, cores=4) == 1  # never 0
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    assert default_workers(cores=4) == 2
    assert default_workers(cores=1) == 1


def test_a_run_takes_the_usable_cores_or_the_users_threads(monkeypatch):
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        torch.set_num_threads(7)
        assert set_torch_threads() == usable_cores() == torch.get_num_threads()
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        torch.set_num_threads(3)
        assert set_torch_threads() == 3  # the user's setting stays (torch read it at start)
    finally:
        torch.set_num_threads(before)


def _tune(store, name: str, n_trials: int) -> list[str]:
    return [
        "tune",
        str(EXPERIMENTS / "wgan_gp_grid25.yaml"),
        *("--n-trials", str(n_trials), "--sampler", "random", "--seed", "0"),
        *("--pruner", "none", "--study-name", name, "--experiment-name", name),
        *("--tracking-uri", store.tracking_uri),
        *(f"-o{o}" for o in TINY_SMALL),
    ]


@pytest.mark.slow
def test_tune_without_workers_starts_one_per_core(shared_store, monkeypatch):
    monkeypatch.delenv("PIPELINE_WORKERS", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cores = usable_cores()
    name = f"cores-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(main, _tune(shared_store, name, 3))
    assert result.exit_code == 0, result.output
    folder = Path(shared_store.tracking_uri.removeprefix("sqlite:///")).parent
    backend = optuna.storages.journal.JournalFileBackend(str(folder / "optuna.journal"))
    study = optuna.load_study(study_name=name, storage=optuna.storages.JournalStorage(backend))
    pids = {t.user_attrs["worker"]["pid"] for t in study.trials}
    assert len(study.trials) == 3
    if cores >= 2:
        assert f"{min(cores, 3)} workers on study" in result.output
        assert "1 thread each" in result.output
        assert len(pids) == min(cores, 3) and os.getpid() not in pids
    else:
        assert "workers on study" not in result.output and pids == {os.getpid()}
    # one trial: one process, whatever the cores
    name = f"cores-one-{uuid.uuid4().hex[:8]}"
    result = CliRunner().invoke(main, _tune(shared_store, name, 1))
    assert result.exit_code == 0, result.output
    assert "workers on study" not in result.output
