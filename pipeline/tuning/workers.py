"""``pipeline tune --workers N``: N worker processes on one study, on Optuna's own storage.

No scheduler of our own: each worker is the same ``pipeline tune`` command (a child
process, ``--worker-index i``) asking the study's storage for its next trial, exactly as
workers started by hand in N shells or on N machines would. This invocation only

- splits ``--n-trials`` across the workers (its trials: ``n // N`` each, the remainder to
  the first ones; Optuna's ``MaxTrialsCallback`` would count the whole study's trials);
- gives worker ``i`` the seed ``seed + i``: each process builds its own sampler, and
  samplers seeded alike draw alike (Optuna's FAQ on reproducible results: a seeded sampler
  repeats its draws), so one seed in N processes would sample the same parameters N times;
- sets ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` to ``cores // N`` per worker (unless the
  user set them; cores as :func:`pipeline.training.cores.usable_cores` counts them), so
  N workers on N cores do not each start a thread per core and fight
  (torch reads them for ``torch.get_num_threads()``; PyTorch's CPU threading notes
  recommend intra-op threads × processes ≤ cores to avoid oversubscription);
- with CUDA, puts worker ``i`` on GPU ``gpus[i mod len(gpus)]`` (``--gpus 0,1``; default:
  every visible GPU), as ``--device cuda:K``; several workers may share one GPU;
- forwards Ctrl-C and SIGTERM to every worker (as SIGINT: a worker stops at the next step
  boundary and its trial is recorded as interrupted, never left RUNNING), waits for all,
  and exits 130 when interrupted, else with the first failing worker's status.

Workers run in sessions of their own, so a terminal's Ctrl-C reaches each one once, through
this process, not twice.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence

from pipeline.errors import ConfigError
from pipeline.training.cores import threads_per_process


def split_trials(n_trials: int | None, workers: int) -> list[int | None]:
    """Each worker's ``--n-trials``: ``n // N``, the remainder to the first ones (a worker
    with no trial is not started); None (a ``--timeout`` alone) for each."""
    if n_trials is None:
        return [None] * workers
    shares = [n_trials // workers + (1 if i < n_trials % workers else 0) for i in range(workers)]
    return [s for s in shares if s > 0]


def default_workers_for(device: str, n_jobs: int = 1, jobs: int | None = None) -> int:
    """``--workers`` when the user gave none: one per usable core on CPU, each with one
    thread (:mod:`pipeline.training.cores`), no more than ``jobs`` (trials or seeds to
    run); 1 when the trials run on CUDA."""
    from pipeline.training.cores import default_workers

    if device != "cpu":
        import torch

        if device.startswith("cuda") or torch.cuda.is_available():
            return 1
    workers = default_workers(n_jobs)
    return workers if jobs is None else max(1, min(workers, jobs))


def parse_gpus(gpus: str | None) -> list[int] | None:
    """``--gpus 0,1`` as CUDA indices; None when not given."""
    if gpus is None:
        return None
    try:
        indices = [int(g) for g in gpus.split(",") if g.strip()]
    except ValueError:
        raise ConfigError("--gpus", f"must be CUDA indices like 0,1 (got {gpus!r})") from None
    if not indices or min(indices) < 0:
        raise ConfigError("--gpus", f"must be CUDA indices like 0,1 (got {gpus!r})")
    return indices


def worker_devices(workers: int, device: str, gpus: list[int] | None) -> list[str | None]:
    """``--device`` per worker: ``cuda:K`` round-robin over ``gpus`` (default: all visible
    GPUs) when the device is ``auto``/``cuda`` and CUDA is there; None leaves it as is."""
    if device not in ("auto", "cuda") and gpus is None:
        return [None] * workers
    if device == "cpu" or device.startswith("cuda:"):
        raise ConfigError("--gpus", f"conflicts with the device {device!r}")
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if gpus is None:
        gpus = list(range(count))
    if not gpus:
        return [None] * workers
    missing = [g for g in gpus if g >= count]
    if missing:
        raise ConfigError("--gpus", f"no CUDA device {missing[0]} (this machine has {count})")
    return [f"cuda:{gpus[i % len(gpus)]}" for i in range(workers)]


def worker_env(workers: int, n_jobs: int) -> dict[str, str]:
    """The workers' environment: thread counts for N workers, unless the user set them."""
    env = dict(os.environ)
    threads = str(threads_per_process(workers, n_jobs))
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(name, threads)
    return env


def run_workers(commands: Sequence[list[str]], env: dict[str, str], echo=print) -> tuple[int, bool]:
    """Start every command, forward SIGINT/SIGTERM to all as SIGINT, wait for all.
    Returns (the first non-zero exit status or 0, whether a signal stopped them)."""
    procs: list[subprocess.Popen] = []
    interrupted = False

    def forward(signum, frame) -> None:
        nonlocal interrupted
        interrupted = True
        for proc in procs:
            if proc.poll() is None:
                try:
                    proc.send_signal(signal.SIGINT)
                except ProcessLookupError:
                    pass

    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for command in commands:
            procs.append(subprocess.Popen(command, env=env, start_new_session=True))
            if interrupted:  # a signal while starting them: the new one stops too
                forward(signal.SIGINT, None)
        codes = [proc.wait() for proc in procs]
    finally:
        for s, old in previous.items():
            signal.signal(s, old if old is not None else signal.SIG_DFL)
    for i, code in enumerate(codes):
        if code != 0:
            echo(f"worker {i} exited with status {code}")
    failed = next((c for c in codes if c != 0), 0)
    return failed, interrupted


def worker_commands(
    base: list[str], shares: list[int | None], seed: int | None, devices: list[str | None]
) -> list[list[str]]:
    """``pipeline [global options] tune …`` per worker: ``base`` (everything but
    ``--n-trials``, ``--seed``, ``--device``) plus each worker's own."""
    commands = []
    for i, share in enumerate(shares):
        command = [sys.executable, "-m", "pipeline.cli", *base, "--worker-index", str(i)]
        if share is not None:
            command += ["--n-trials", str(share)]
        if seed is not None:
            command += ["--seed", str(seed + i)]
        if devices[i] is not None:
            command += ["--device", str(devices[i])]
        commands.append(command)
    return commands


def command_line(ctx, skip: Sequence[str] = ()) -> list[str]:
    """The arguments that give ``ctx``'s command (and its parent group's options) the same
    values again, leaving out the parameters named in ``skip``."""
    import click

    args: list[str] = []
    if ctx.parent is not None and ctx.parent.parent is None:
        args += [*command_line(ctx.parent), ctx.info_name]
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        if param.name in skip or value is None or value == ():
            continue
        if isinstance(param, click.Argument):
            args.append(str(value))
        elif getattr(param, "is_flag", False):
            if value:
                args.append(param.opts[0])
        else:
            for v in value if getattr(param, "multiple", False) else [value]:
                args += [param.opts[0], str(v)]
    return args


def tune_in_workers(ctx, tuner, workers: int, gpus: str | None, echo=print) -> int:
    """Run ``tuner``'s invocation (already checked) as ``workers`` processes; the exit
    status for the command (130 when interrupted)."""
    import time

    from pipeline.stores.storage import check_artifact_location, parse_storage

    options = tuner.options
    if workers < 1:
        raise ConfigError("--workers", f"must be ≥ 1 (got {workers})")
    # refuse a bad storage or artifact location once, here, not N times
    location = parse_storage(options.storage, tuner.tracking)
    location.check()
    if tuner.tracking is not None:
        check_artifact_location(tuner.tracking, tuner.experiment_name)
    shares = split_trials(options.n_trials, workers)
    devices = worker_devices(len(shares), tuner.base_experiment.train.device, parse_gpus(gpus))
    skip = ("n_trials", "seed", "workers", "gpus", "worker_index")
    if any(d is not None for d in devices):
        skip += ("device",)
    commands = worker_commands(command_line(ctx, skip), shares, options.seed, devices)
    env = worker_env(len(commands), options.n_jobs)
    each = ", ".join(str(s) for s in shares) if options.n_trials else "until --timeout"
    echo(
        f"{len(commands)} workers on study {tuner.study_name!r} (trials each: {each}; "
        f"{env['OMP_NUM_THREADS']} thread{'' if env['OMP_NUM_THREADS'] == '1' else 's'} each"
        + (f"; devices {', '.join(str(d) for d in devices)}" if devices[0] else "")
        + ")"
    )
    start = time.perf_counter()
    code, interrupted = run_workers(commands, env, echo)
    if interrupted:
        echo("interrupted: every worker stopped; the study keeps every finished trial")
        return 130
    if code == 0:
        import optuna

        from pipeline.tuning.report import summary

        study = optuna.load_study(study_name=tuner.study_name, storage=location.open())
        echo(summary(study, tuner.space.metric, time.perf_counter() - start))
    return code
