"""The cores this process may use, and the worker processes and threads that fit them.

The rule (issue 22, measured on this project's 2-core machines, docs/speed.md):

- **trials in parallel, one thread each.** ``pipeline tune``, ``compare`` and ``retrain``
  on CPU start one worker process per usable core, each with one intra-op thread. The
  MLP GANs of the benchmarks are too small for intra-op threads to pay: two threads bought
  1.35× on one 3×128 trial, two 1-thread workers 1.38× the trials per hour of one 2-thread
  worker (``benchmarks/workers.py``), and beside a busy core two threads ran 3.1× slower
  than quiet (1.5× with passive waits, ``benchmarks/omp_wait.py``) where one thread on its
  own core keeps its speed. PyTorch's CPU threading notes give the bound the rule meets:
  intra-op threads × processes ≤ cores.
- **one run: every usable core.** ``pipeline train`` (and a tune left with one worker)
  takes ``usable_cores()`` threads; torch's own default counts the machine's cores and
  ignores a container's CPU quota.
- **the user's word wins.** ``--workers`` (or ``PIPELINE_WORKERS``) and ``OMP_NUM_THREADS``
  are kept as given; with ``OMP_NUM_THREADS=k`` set, the default is ``cores // k`` workers.
- **CUDA:** one worker by default; the GPU, not the cores, bounds a trial there
  (``--workers``/``--gpus`` spread trials over GPUs).

Usable cores are the affinity mask (``taskset``, ``docker --cpuset-cpus``) capped by the
cgroup's CPU quota (``docker --cpus``, Kubernetes limits: cgroup v2's ``cpu.max`` or v1's
``cpu.cfs_quota_us``/``cpu.cfs_period_us``), rounded down: 1.5 cores of quota hold one
1-thread worker without contention, not two.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def affinity_cores() -> int:
    """CPUs this process may run on (its affinity mask; all CPUs where there is none)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _quota(text: str, period_text: str | None = None) -> float | None:
    """Cores allowed by cgroup v2's ``cpu.max`` ("max 100000", "150000 100000") or v1's
    quota and period files; None when unlimited."""
    parts = text.split()
    if not parts or parts[0] in ("max", "-1"):
        return None
    period = float(parts[1]) if len(parts) > 1 else float(period_text or 0)
    if period <= 0:
        return None
    return float(parts[0]) / period


def cgroup_cores(root: Path = CGROUP_ROOT, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The tightest CPU quota on this process's cgroup and its ancestors, in cores; None
    when there is none (or no cgroup to read)."""
    try:
        lines = proc_cgroup.read_text().splitlines()
    except OSError:
        return None
    limits: list[float] = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = Path(path.lstrip("/"))
        if controllers == "":  # cgroup v2 (unified)
            bases = [root, root / "unified"]
            files = ("cpu.max", None)
        elif "cpu" in controllers.split(","):  # cgroup v1
            bases = [root / controllers, root / "cpu", root / "cpu,cpuacct"]
            files = ("cpu.cfs_quota_us", "cpu.cfs_period_us")
        else:
            continue
        for base in bases:
            if not base.is_dir():
                continue
            for folder in [base / rel, *(base / rel).parents]:
                if not folder.is_relative_to(base):
                    break
                quota_file = folder / files[0]
                if not quota_file.is_file():
                    continue
                period = (folder / files[1]).read_text() if files[1] else None
                found = _quota(quota_file.read_text(), period)
                if found is not None:
                    limits.append(found)
            break
    return min(limits) if limits else None


def usable_cores() -> int:
    """The affinity mask's CPUs, capped by the cgroup quota (rounded down, at least 1)."""
    cores = affinity_cores()
    quota = cgroup_cores()
    if quota is not None:
        cores = min(cores, max(1, math.floor(quota)))
    return max(1, cores)


def user_threads() -> int | None:
    """``OMP_NUM_THREADS`` when the user set it (its first level, as libgomp reads it)."""
    value = os.environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def default_workers(n_jobs: int = 1, cores: int | None = None) -> int:
    """Worker processes for a CPU tune, compare or retrain: the usable cores divided by the
    threads each one will run (``OMP_NUM_THREADS`` when set, else 1) and its ``--n-jobs``."""
    cores = usable_cores() if cores is None else cores
    return max(1, cores // ((user_threads() or 1) * max(1, n_jobs)))


def threads_per_process(processes: int, n_jobs: int = 1, cores: int | None = None) -> int:
    """Intra-op threads for each of ``processes`` processes running ``n_jobs`` trials each."""
    cores = usable_cores() if cores is None else cores
    return max(1, cores // (max(1, processes) * max(1, n_jobs)))


def set_torch_threads(processes: int = 1, n_jobs: int = 1) -> int:
    """Give torch this process's share of the usable cores, unless ``OMP_NUM_THREADS``
    chose for it; the thread count torch runs with."""
    import torch

    if user_threads() is None:
        torch.set_num_threads(threads_per_process(processes, n_jobs))
    elif n_jobs > 1:
        torch.set_num_threads(max(1, torch.get_num_threads() // n_jobs))
    return torch.get_num_threads()
