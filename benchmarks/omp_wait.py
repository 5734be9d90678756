"""Is OpenMP's spin-waiting what turns a busy neighbour into a many-fold slowdown? (issue 22)

One ``pipeline train`` of ``experiments/wgan_gp_grid25.yaml`` (the 3×128 nets of the issue)
for ``--steps`` steps, untracked work timed by the command itself ("finished N steps in
X s": training only, not start-up), in three arms:

- ``1 thread``: ``OMP_NUM_THREADS=1``;
- ``2 threads, spinning (before)``: ``OMP_NUM_THREADS=2`` with GNU libgomp's default wait
  (torch's Linux wheels use libgomp: a waiting thread spins ``GOMP_SPINCOUNT`` times,
  300,000 by default, before it sleeps), what the pipeline ran with before;
- ``2 threads, passive (now)``: ``OMP_NUM_THREADS=2`` as the pipeline runs now, with
  ``OMP_WAIT_POLICY=PASSIVE`` (waiting threads sleep at once; ``pipeline.cli.group``).

each quiet and beside a neighbour the benchmark starts and stops itself: one process
running a 1-thread NumPy matmul loop, which keeps one core busy as another user's job
would. Arms are interleaved, rounds alternate their order; the figures are medians of the
seconds per arm over ``--rounds`` rounds, and the slowdown of each arm beside the
neighbour against quiet. The last line of stdout is one line of JSON, also written to
``benchmarks/results/omp_wait.json``.

Usage: ``python benchmarks/omp_wait.py [--steps 300] [--rounds 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "wgan_gp_grid25.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "omp_wait.json"
ARMS = {
    "1 thread": {"OMP_NUM_THREADS": "1"},
    # libgomp's behaviour with the policy unset (its manual: spin 300,000 times, then
    # sleep), what the pipeline ran with before; set explicitly, since the pipeline now
    # sets the passive policy itself unless GOMP_SPINCOUNT or OMP_WAIT_POLICY is given
    "2 threads, spinning (before)": {"OMP_NUM_THREADS": "2", "GOMP_SPINCOUNT": "300000"},
    "2 threads, passive (now)": {"OMP_NUM_THREADS": "2"},
}
NEIGHBOUR = (
    "import numpy as np\na = np.random.rand(400, 400)\nwhile True:\n    a = (a @ a) / 400.0\n"
)


@contextmanager
def busy_neighbour(busy: bool) -> Iterator[None]:
    """While inside, when ``busy``: a process running a 1-thread NumPy matmul loop, which
    keeps one core busy as another user's job would; killed on the way out."""
    if not busy:
        yield
        return
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    neighbour = subprocess.Popen([sys.executable, "-c", NEIGHBOUR], env=env)
    try:
        yield
    finally:
        neighbour.kill()
        neighbour.wait()


def train_seconds(extra_env: dict[str, str], steps: int) -> float:
    """The training time ``pipeline train`` reports for ``steps`` steps, untracked."""
    exe = os.path.join(os.path.dirname(sys.executable), "pipeline")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "MKL_"))}
    env |= {"MLFLOW_DISABLE_TELEMETRY": "true", **extra_env}
    with tempfile.TemporaryDirectory() as tmp:
        command = [exe, "train", str(EXPERIMENT), "--no-progress", "-o", f"train.steps={steps}"]
        command += ["-o", f"train.eval_every={steps}", "--tracking-uri", f"sqlite:///{tmp}/m.db"]
        out = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True, check=True)
    found = re.search(r"finished \d+ steps in ([0-9.]+) s", out.stdout)
    assert found, out.stdout + out.stderr
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    times: dict[str, list[float]] = {}
    for r in range(args.rounds):
        for busy in (False, True) if r % 2 == 0 else (True, False):
            with busy_neighbour(busy):
                names = list(ARMS) if r % 2 == 0 else list(reversed(ARMS))
                for name in names:
                    key = f"{name} · {'neighbour' if busy else 'quiet'}"
                    times.setdefault(key, []).append(train_seconds(ARMS[name], args.steps))
                    print(f"round {r}: {key}: {times[key][-1]:.1f} s", flush=True)
    medians = {k: round(statistics.median(v), 2) for k, v in times.items()}
    slowdown = {
        name: round(medians[f"{name} · neighbour"] / medians[f"{name} · quiet"], 2) for name in ARMS
    }
    result = {
        "benchmark": "omp_wait",
        "steps": args.steps,
        "rounds": args.rounds,
        "median_s": medians,
        "times_s": times,
        "slowdown_beside_neighbour": slowdown,
        "cpu_count": os.cpu_count(),
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
    }
    RESULTS.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
