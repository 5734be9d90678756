"""What MLflow tracking costs a tuning trial: the same trial with tracking on and off.

One trial of ``pipeline tune experiments/wgan_gp_grid25.yaml`` (the objective's
``run_training`` call, with a parent run and the trial's record, as ``Tuner.objective``
makes it) is timed end to end — building, training, every evaluation, and with tracking
on: run creation, params, per-step metrics, the evaluation samples and the end-of-trial
files (``samples.npy``, per-step metrics, checkpoint). With tracking off the trainer skips
every artifact (nobody would read them), so the difference is the whole price of tracking
a trial. What a trial that becomes the best gets afterwards (its figures and generator,
:func:`pipeline.training.trial_record.complete_trial_run`) is timed once at the end and reported on
its own line: it is paid by the best trial only, outside its trial time.

Rounds alternate the two arms (which one goes first alternates too); the result is the
median of per-round ratios ``on / off``, with at least 5 rounds. Each trial's time is split
into its training loop (``TrainResult.wall_time_s``: steps and evaluations) and the rest
(building, run creation, the end-of-trial files); the **fixed cost** is the median over
rounds of (rest with tracking − rest without), the **loop cost** the same for the loop.
The tracked trial's background logging thread is timed too (CPU and wall seconds of its
jobs): the loop cannot lose more than the time that thread is busy.

Noise: on 2 shared cores one busy process elsewhere slows a 2-thread torch loop several
times (beside a test suite, an untracked 300-step trial took 54–134 s with 2 threads, 8–9 s
with 1).
Each trial records how many cores *other* processes used meanwhile (``/proc/stat`` minus
this process); a round is *quiet* when that stayed ≤ ``--quiet-cores`` in both of its
trials. Rounds go on until ``--rounds`` are quiet or ``--max-rounds`` have run; the ratio
is the median of the quiet rounds when there are ``--rounds`` of them, else of all rounds
(and ``"quiet": false`` says so). The goal is ≤ 1.02 at 800 steps.

Usage: ``python benchmarks/tracking_overhead.py [--quick] [--steps N] [--rounds R]``.
The last line of stdout is one line of JSON, also written to
``benchmarks/results/tracking_overhead.json``.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from overhead import cpu_snapshot, others_cores

from pipeline.experiment.config import load_experiment
from pipeline.host.registry import default_registry
from pipeline.tracking.client import RunTracker, TrackingSettings
from pipeline.tracking.client import client as tracking_module
from pipeline.training.run import run_training

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "wgan_gp_grid25.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "tracking_overhead.json"
MIN_ROUNDS = 5
GOAL = 1.02


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="400-step trials")
    parser.add_argument("--steps", type=int, default=None, help="generator steps per trial")
    parser.add_argument("--rounds", type=int, default=MIN_ROUNDS, help=f"≥ {MIN_ROUNDS}")
    parser.add_argument("--max-rounds", type=int, default=None, help="default 2 × --rounds")
    parser.add_argument(
        "--quiet-cores", type=float, default=0.25, help="other processes' cores in a quiet trial"
    )
    parser.add_argument("--width", type=int, default=128, help="MLP width of both nets")
    args = parser.parse_args()
    if args.rounds < MIN_ROUNDS:
        parser.error(f"--rounds must be ≥ {MIN_ROUNDS} (a median of fewer is noise here)")
    max_rounds = max(args.max_rounds or 2 * args.rounds, args.rounds)
    steps = args.steps or (400 if args.quick else 800)
    overrides = [
        f"train.steps={steps}",
        f"train.eval_every={max(1, steps // 4)}",
        f"model.g_width={args.width}",
        f"model.d_width={args.width}",
        "train.device=cpu",
    ]
    exp = load_experiment(EXPERIMENT, overrides, registry=default_registry())
    # what Tuner.objective passes; older commits (measured for comparison) lack it
    trial_kwargs = {"trial": True} if "trial" in inspect.signature(run_training).parameters else {}
    rows: list[dict[str, float]] = []
    logger = _LoggerClock()
    with tempfile.TemporaryDirectory() as tmp:
        tracking = TrackingSettings(
            tracking_uri=f"sqlite:///{tmp}/mlflow.db", artifact_location=f"{tmp}/artifacts"
        )
        parent = RunTracker.start(tracking, exp.name, run_name="benchmark study")
        last_run: list[str] = []

        def trial(tracked: bool) -> tuple[float, float, float]:
            before = cpu_snapshot()
            start = time.perf_counter()
            result = run_training(
                exp,
                tracking=tracking if tracked else None,
                progress=False,
                on_eval=lambda step, metrics: None,
                parent_run_id=parent.run_id if tracked else None,
                **(trial_kwargs if tracked else {}),
            )
            wall = time.perf_counter() - start
            load = others_cores(before, cpu_snapshot())
            if result.run_id:
                last_run.append(result.run_id)
            return wall, result.wall_time_s, float("nan") if load is None else load

        trial(True)  # warm-up: imports, store creation
        trial(False)
        r = 0
        while r < max_rounds and sum(row["quiet"] for row in rows) < args.rounds:
            order = (True, False) if r % 2 == 0 else (False, True)
            times = {}
            for tracked in order:
                logger.reset()
                times[tracked] = trial(tracked)
                if tracked:
                    logger_cpu, logger_wall = logger.cpu, logger.wall
            (on, on_loop, on_load), (off, off_loop, off_load) = times[True], times[False]
            rows.append(
                {
                    "on": on,
                    "off": off,
                    "ratio": on / off,
                    "fixed": (on - on_loop) - (off - off_loop),
                    "loop": on_loop - off_loop,
                    "logger_cpu": logger_cpu,
                    "logger_wall": logger_wall,
                    "load_on": on_load,
                    "load_off": off_load,
                    "quiet": max(on_load, off_load) <= args.quiet_cores,
                }
            )
            r += 1
            print(
                f"round {r}: tracking on {on:.2f} s (loop {on_loop:.2f}; logger thread "
                f"{logger_cpu:.3f} s CPU, {logger_wall:.3f} s busy), off {off:.2f} s "
                f"(loop {off_loop:.2f}), ratio {on / off:.3f}; other processes used "
                f"{on_load:.2f} / {off_load:.2f} cores"
                + ("" if rows[-1]["quiet"] else " (not quiet)"),
                file=sys.stderr,
            )
        best_s = None
        if trial_kwargs:
            from pipeline.training.trial_record import complete_trial_run

            start = time.perf_counter()
            complete_trial_run(tracking, last_run[-1], default_registry())
            best_s = time.perf_counter() - start

    quiet_rows = [row for row in rows if row["quiet"]]
    quiet = len(quiet_rows) >= args.rounds
    used = quiet_rows if quiet else rows

    def median(key: str, among: list[dict[str, float]] = used) -> float:
        return statistics.median(row[key] for row in among)

    result = {
        "benchmark": "tracking_overhead",
        "ratio": round(median("ratio"), 4),
        "quiet": quiet,
        "trial_s_tracking_on": round(median("on"), 3),
        "trial_s_tracking_off": round(median("off"), 3),
        "fixed_cost_s": round(median("fixed"), 3),
        "loop_cost_s": round(median("loop"), 3),
        "logger_thread_cpu_s": round(median("logger_cpu", rows), 3),
        "logger_thread_busy_s": round(median("logger_wall", rows), 3),
        "best_trial_completion_s": None if best_s is None else round(best_s, 3),
        "ratio_all_rounds": round(median("ratio", rows), 4),
        "ratios": [round(row["ratio"], 4) for row in rows],
        "others_cores": [[round(row["load_on"], 2), round(row["load_off"], 2)] for row in rows],
        "quiet_cores": args.quiet_cores,
        "rounds": len(rows),
        "quiet_rounds": len(quiet_rows),
        "steps": steps,
        "evaluations": 4,
        "width": args.width,
        "quick": args.quick,
    }
    which = "quiet" if quiet else f"all (only {len(quiet_rows)} quiet)"
    print(
        f"trial wall time, median of {len(used)} interleaved rounds, {which}: tracking on "
        f"{result['trial_s_tracking_on']} s, off {result['trial_s_tracking_off']} s "
        f"(ratio {result['ratio']}; goal ≤ {GOAL}); fixed cost {result['fixed_cost_s']} s "
        f"per trial, {result['loop_cost_s']} s in the training loop"
    )
    if best_s is not None:
        print(f"completing the best trial (figures, generator model): {best_s:.2f} s, once")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


class _LoggerClock:
    """CPU and wall seconds of the jobs the tracker's background thread runs (wraps
    ``RunTracker.submit`` in this process; the jobs themselves are unchanged)."""

    def __init__(self) -> None:
        self.cpu = self.wall = 0.0
        submit = tracking_module.RunTracker.submit
        clock = self

        def timed_submit(tracker, fn, *args):
            def job():
                cpu, wall = time.thread_time(), time.perf_counter()
                try:
                    return fn(*args)
                finally:
                    clock.cpu += time.thread_time() - cpu
                    clock.wall += time.perf_counter() - wall

            submit(tracker, job)

        tracking_module.RunTracker.submit = timed_submit

    def reset(self) -> None:
        self.cpu = self.wall = 0.0


if __name__ == "__main__":
    main()
