"""Which process runs a trial or a training run, and whether it is gone.

A process is its host name, the machine's boot id and pid namespace (pids compare only
within both), its pid and the start time of that pid (so a recycled pid is not taken for
the old process). :mod:`pipeline.stores.dead_trials` records it on every tuning trial,
:mod:`pipeline.training.dead_runs` on every training run; a later command on the same host
that finds the process gone ends what it left RUNNING.
"""

from __future__ import annotations

import os
import socket
from dataclasses import asdict, dataclass
from typing import Any


def _read(path: str) -> str:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def _machine() -> str:
    """Boot id and pid namespace: pids are comparable only within both ("" off Linux)."""
    boot = _read("/proc/sys/kernel/random/boot_id")
    try:
        namespace = os.readlink("/proc/self/ns/pid")
    except OSError:
        namespace = ""
    return f"{boot}/{namespace}" if boot or namespace else ""


def process_start(pid: int) -> int | None:
    """The start time (clock ticks after boot) of a live process, None when it is gone.

    A zombie (killed, not yet reaped by its parent) counts as gone. Off Linux, or where
    ``/proc`` hides other users' processes, an existing pid gives ``-1``: alive, start
    time unknown.
    """
    stat = _read(f"/proc/{pid}/stat")
    if stat:
        # the command name (field 2) may hold spaces and parentheses: split after it
        fields = stat[stat.rindex(")") + 2 :].split()
        if fields[0] in ("Z", "X", "x"):
            return None
        return int(fields[19])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return -1
    return -1


@dataclass(frozen=True)
class Worker:
    """Which process runs a trial, as recorded in the trial's ``worker`` user attr."""

    host: str
    machine: str
    pid: int
    start: int | None

    @classmethod
    def current(cls) -> Worker:
        pid = os.getpid()
        return cls(socket.gethostname(), _machine(), pid, process_start(pid))

    @classmethod
    def from_attr(cls, value: Any) -> Worker | None:
        if not isinstance(value, dict):
            return None
        try:
            start = value.get("start")
            return cls(
                str(value["host"]),
                str(value["machine"]),
                int(value["pid"]),
                None if start is None else int(start),
            )
        except (KeyError, TypeError, ValueError):
            return None

    def as_attr(self) -> dict[str, Any]:
        return asdict(self)

    def same_host(self, other: Worker) -> bool:
        return self.host == other.host and self.machine == other.machine

    def describe(self) -> str:
        return f"process {self.pid} on {self.host}"


def is_dead(worker: Worker, here: Worker | None = None) -> bool:
    """True only if ``worker`` ran on this host and its process is gone (or its pid now
    belongs to a newer process). A worker on another host is never dead to this check."""
    here = here or Worker.current()
    if not worker.same_host(here):
        return False
    start = process_start(worker.pid)
    if start is None:
        return True
    return start >= 0 and worker.start not in (None, -1) and start != worker.start
