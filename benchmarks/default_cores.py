"""Trials per hour of ``pipeline tune`` with today's defaults against the old ones, quiet
and beside a busy neighbour (issue 22).

The same study in each arm: ``experiments/wgan_gp_grid25.yaml`` with 3×``--width`` nets
(default 128, the size the issue measured) searched over
λ alone, so every trial costs the same whatever the sampler draws, ``--sampler random
--seed 0 --pruner none``, ``--trials`` trials of ``--steps`` steps, each arm in a new
folder (a new MLflow store and journal file, as a user's first run). Timed end to end: the
command's wall clock, interpreter start, store creation, every trial, the best trial's
figures and the study's plots, which is the trials per hour a user gets.

- ``before``: one process with torch's 2 intra-op threads and GNU libgomp's default
  spin-wait, what ``pipeline tune`` did before issue 22 (``--workers 1``,
  ``GOMP_SPINCOUNT=300000``: libgomp's own default, which keeps the pipeline from setting
  its passive wait);
- ``now``: ``pipeline tune`` with no ``--workers``: one 1-thread worker per usable core
  (``pipeline/training/cores.py``), passive waits.

Each arm runs quiet and beside a neighbour the benchmark starts and stops itself (a
1-thread NumPy matmul loop keeping one core busy, as in ``benchmarks/omp_wait.py``). Arms
are interleaved; rounds alternate their order. Reported: medians over ``--rounds`` of
trials per hour, ``now / before`` quiet (goal ≥ 1.4) and each arm's slowdown beside the
neighbour (goal for ``now``: ≤ 1.6). The last line of stdout is one line of JSON, also
written to ``benchmarks/results/default_cores.json``.

Usage: ``python benchmarks/default_cores.py [--trials 8] [--steps 400] [--rounds 3] [--width 128]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from omp_wait import busy_neighbour
from workers import lambda_only, tune_command

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "default_cores.json"
ARMS = {
    "before": (["--workers", "1"], {"GOMP_SPINCOUNT": "300000"}),
    "now": ([], {}),
}
GOAL_QUIET = 1.4
GOAL_NEIGHBOUR = 1.6


def tune_seconds(arm: str, experiment: Path, args: argparse.Namespace) -> float:
    """One ``pipeline tune`` of the arm in a new folder; its wall clock."""
    extra_args, extra_env = ARMS[arm]
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OMP_", "GOMP_", "MKL_", "PIPELINE_WORKERS"))
    }
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", **extra_env}
    command = tune_command(experiment, args, *extra_args)
    with tempfile.TemporaryDirectory(prefix="bench-cores-") as tmp:
        start = time.perf_counter()
        done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--width", type=int, default=128, help="MLP width of both nets")
    args = parser.parse_args()
    seconds: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-cores-exp-") as tmp:
        experiment = lambda_only(Path(tmp))
        for r in range(args.rounds):
            for busy in (False, True) if r % 2 == 0 else (True, False):
                with busy_neighbour(busy):
                    for arm in ARMS if r % 2 == 0 else reversed(ARMS):
                        key = f"{arm} · {'neighbour' if busy else 'quiet'}"
                        seconds.setdefault(key, []).append(tune_seconds(arm, experiment, args))
                        print(f"round {r + 1}: {key} {seconds[key][-1]:.1f} s", file=sys.stderr)
    per_hour = {k: round(3600 * args.trials / statistics.median(v), 1) for k, v in seconds.items()}
    slowdown = {
        arm: round(per_hour[f"{arm} · quiet"] / per_hour[f"{arm} · neighbour"], 2) for arm in ARMS
    }
    result = {
        "benchmark": "default_cores",
        "trials_per_hour": per_hour,
        "now_over_before_quiet": round(per_hour["now · quiet"] / per_hour["before · quiet"], 2),
        "now_over_before_neighbour": round(
            per_hour["now · neighbour"] / per_hour["before · neighbour"], 2
        ),
        "slowdown_beside_neighbour": slowdown,
        "goals": {"now_over_before_quiet": GOAL_QUIET, "now_slowdown": GOAL_NEIGHBOUR},
        "seconds": {k: [round(s, 1) for s in v] for k, v in seconds.items()},
        "trials": args.trials,
        "steps": args.steps,
        "rounds": args.rounds,
        "width": args.width,
        "cores": len(os.sched_getaffinity(0)),
        "load_average_at_end": os.getloadavg()[0],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
