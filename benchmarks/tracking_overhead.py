"""What MLflow tracking costs a tuning trial: the same trial with tracking on and off.

One trial of ``pipeline tune experiments/wgan_gp_grid25.yaml`` (the objective's
``run_training`` call, with a parent run as in a tune) is timed end to end — building,
training, every evaluation, and with tracking on: run creation, params, batched metrics,
the sample plot of each evaluation, loss curves, samples, checkpoint and the generator
logged as an MLflow model. With tracking off the trainer skips every artifact (nobody
would read them), so the difference is the whole price of tracking.

Rounds alternate the two arms (which one goes first alternates too); the result is the
median of per-round ratios ``on / off``. The goal is ≤ 1.05.

Usage: ``python benchmarks/tracking_overhead.py [--quick] [--steps N] [--rounds R]``.
The last line of stdout is one line of JSON, also written to
``benchmarks/results/tracking_overhead.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from pipeline.config import load_experiment
from pipeline.registry import default_registry
from pipeline.tracking import RunTracker, TrackingSettings
from pipeline.train import run_training

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "wgan_gp_grid25.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "tracking_overhead.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short trials, 3 rounds")
    parser.add_argument("--steps", type=int, default=None, help="generator steps per trial")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--width", type=int, default=128, help="MLP width of both nets")
    args = parser.parse_args()
    steps = args.steps or (400 if args.quick else 1500)
    rounds = args.rounds or (3 if args.quick else 5)
    overrides = [
        f"train.steps={steps}",
        f"train.eval_every={max(1, steps // 4)}",
        f"model.g_width={args.width}",
        f"model.d_width={args.width}",
        "train.device=cpu",
    ]
    exp = load_experiment(EXPERIMENT, overrides, registry=default_registry())
    with tempfile.TemporaryDirectory() as tmp:
        tracking = TrackingSettings(
            tracking_uri=f"sqlite:///{tmp}/mlflow.db", artifact_location=f"{tmp}/artifacts"
        )
        parent = RunTracker.start(tracking, exp.name, run_name="benchmark study")

        def trial(tracked: bool) -> float:
            start = time.perf_counter()
            run_training(
                exp,
                tracking=tracking if tracked else None,
                progress=False,
                on_eval=lambda step, metrics: None,
                parent_run_id=parent.run_id if tracked else None,
            )
            return time.perf_counter() - start

        trial(True)  # warm-up: imports, store creation, first model logging
        trial(False)
        on: list[float] = []
        off: list[float] = []
        for r in range(rounds):
            order = (True, False) if r % 2 == 0 else (False, True)
            times = {tracked: trial(tracked) for tracked in order}
            on.append(times[True])
            off.append(times[False])
            print(
                f"round {r + 1}: tracking on {times[True]:.2f} s, off {times[False]:.2f} s, "
                f"ratio {times[True] / times[False]:.3f}",
                file=sys.stderr,
            )
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    result = {
        "benchmark": "tracking_overhead",
        "ratio": round(statistics.median(ratios), 4),
        "trial_s_tracking_on": round(statistics.median(on), 3),
        "trial_s_tracking_off": round(statistics.median(off), 3),
        "ratios": [round(x, 4) for x in ratios],
        "steps": steps,
        "evaluations": 4,
        "width": args.width,
        "quick": args.quick,
    }
    print(
        f"trial wall time, median of {rounds} rounds: tracking on "
        f"{result['trial_s_tracking_on']} s, off {result['trial_s_tracking_off']} s "
        f"(ratio {result['ratio']}; goal ≤ 1.05)"
    )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
