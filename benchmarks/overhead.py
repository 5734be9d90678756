"""Overhead of the pipeline's training loop against a hand-written PyTorch loop.

For each critic constraint (none, gradient_penalty, spectral_norm, weight_clipping) this
trains the WGAN-GP toy setup (``experiments/wgan_gp_grid25.yaml``: 3×512 MLPs, batch 256,
n_critic 5) with the pipeline and with ``reference_loop.train`` (the same math written
the way ``gan_toy.py`` is), alternating the two arms round by round in one process, with
the same seeds and the same number of torch threads.

Measured window, the same in both arms: generator steps ``warmup+1 .. steps`` of a run
(the first ``warmup`` steps of every run are excluded in both arms). For the pipeline the
window holds everything its loop does per step: the buffered per-step values, the
gradient norms and diagnostics of a log step, and the batched MLflow ``log_batch`` to a
real SQLite store (tracking is on). It ends where the final evaluation starts, so setup
(building, run creation, config artifact), the evaluation and the end-of-run artifacts are
outside it. ``steps/s`` = measured steps / seconds of the window; nothing is subtracted.

Noise: on a 2-core machine one busy process elsewhere slows a 2-thread torch loop by
anything up to 20x. Each run records how many cores *other* processes used meanwhile
(``/proc/stat`` minus this process's CPU time); a round where either arm saw more than
``--noise-cores`` is marked disturbed and, while the time budget allows, run again (no
round starts that would end past ``--budget``, beyond the first round of each constraint).
The summary uses the undisturbed rounds when there are any and says so when there are not.

Usage: ``python benchmarks/overhead.py [--quick] [--threads 2] [--rounds 3] [--steps N]``.
The last line of stdout is one line of JSON; the same JSON goes to
``benchmarks/results/overhead.json``.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from reference_loop import CONSTRAINTS
from reference_loop import train as script_train

from pipeline.experiment.config import Experiment, load_yaml, validate
from pipeline.host.registry import default_registry
from pipeline.tracking.client import RunTracker, TrackingSettings
from pipeline.training.run import run_tags
from pipeline.training.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "wgan_gp_grid25.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "overhead.json"
SEED = 0
WARMUP_STEPS = 1  # steps at the start of every run left out of the window (both arms)
WARMUP_RUN_STEPS = 3  # one short run of each arm per constraint before measuring


# -- CPU used by other processes -----------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    machine_busy_s: float | None
    own_cpu_s: float


def cpu_snapshot() -> CpuSnapshot:
    """Wall clock, busy CPU seconds of the whole machine, CPU seconds of this process."""
    busy: float | None = None
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...: all but idle and iowait
        ticks = sum(fields[:3]) + sum(fields[5:8])
        busy = ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        pass
    t = os.times()
    return CpuSnapshot(time.perf_counter(), busy, t.user + t.system)


def others_cores(a: CpuSnapshot, b: CpuSnapshot) -> float | None:
    """Average cores used by other processes between two snapshots (None: unknown)."""
    if a.machine_busy_s is None or b.machine_busy_s is None or b.wall <= a.wall:
        return None
    others = (b.machine_busy_s - a.machine_busy_s) - (b.own_cpu_s - a.own_cpu_s)
    return max(others, 0.0) / (b.wall - a.wall)


# -- the pipeline arm ------------------------------------------------------------------


class _WindowClosed(Exception):
    """Raised at the start of the final evaluation when the run is stopped there."""


class TimedTrainer(Trainer):
    """The pipeline's ``Trainer``, unchanged, with two clock readings added: after the
    last warm-up step and at the start of the final evaluation."""

    warmup_steps = WARMUP_STEPS
    #: skip the final evaluation and end-of-run artifacts (they are outside the window)
    stop_at_eval = True
    window_start: CpuSnapshot | None = None
    window_end: CpuSnapshot | None = None

    def train_step(self, measure: bool):
        out = super().train_step(measure)
        if self.step == self.warmup_steps:
            self.window_start = cpu_snapshot()
        return out

    def evaluate(self):
        if self.step == self.cfg.steps and self.window_end is None:
            self.window_end = cpu_snapshot()
            if self.stop_at_eval:
                raise _WindowClosed
        return super().evaluate()


def experiment_for(constraint: str, steps: int) -> Experiment:
    """The WGAN-GP grid25 experiment with ``constraint``, ``steps`` steps, one evaluation."""
    data = copy.deepcopy(load_yaml(EXPERIMENT))
    data["name"] = f"overhead-{constraint}"
    if constraint == "gradient_penalty":
        data["constraint"] = {"name": "gradient_penalty", "weight": 0.1}
    elif constraint == "weight_clipping":
        data["constraint"] = {"name": "weight_clipping", "clip": 0.01}
        # the WGAN recipe (Arjovsky et al. 2017), as in reference_loop.py
        data["optimizer"] = {
            "generator": {"name": "rmsprop", "lr": 5e-5},
            "critic": {"name": "rmsprop", "lr": 5e-5},
        }
    else:
        data["constraint"] = {"name": constraint}
    data["train"] = {
        **data.get("train", {}),
        "steps": steps,
        "eval_every": steps,
        "device": "cpu",
        "seed": SEED,
    }
    return validate(data, default_registry())


def pipeline_run(
    constraint: str,
    steps: int,
    tracking: TrackingSettings,
    workdir: Path,
    *,
    full_run: bool = False,
) -> tuple[float, float | None]:
    """One tracked pipeline run, set up as ``run_training`` does.

    Returns the seconds of the window and the cores other processes used during it.
    """
    exp = experiment_for(constraint, steps)
    trainer = TimedTrainer(exp, device="cpu", workdir=workdir, progress=False)
    trainer.stop_at_eval = not full_run
    tracker = RunTracker.start(
        tracking,
        tracking.experiment_name or exp.name,
        tags=run_tags(exp, trainer.device) | {"benchmark": "overhead"},
    )
    trainer.tracker = tracker
    tracker.log_params(exp.flat_params())
    try:
        trainer.run()
    except _WindowClosed:
        pass
    except BaseException as exc:
        tracker.finish("FAILED", f"{type(exc).__name__}: {exc}")
        raise
    tracker.finish("FINISHED")
    a, b = trainer.window_start, trainer.window_end
    assert a is not None and b is not None
    return b.wall - a.wall, others_cores(a, b)


def script_run(constraint: str, steps: int) -> tuple[float, float | None]:
    """One run of the hand-written loop: seconds of the window, others' cores meanwhile."""
    a = cpu_snapshot()
    seconds = script_train(constraint, steps, seed=SEED, warmup_steps=WARMUP_STEPS)
    return seconds, others_cores(a, cpu_snapshot())


# -- rounds and the summary --------------------------------------------------------------


@dataclass
class Round:
    pipeline: float  # steps/s
    script: float
    noise: float | None  # the larger of the two arms' "other processes" cores

    @property
    def ratio(self) -> float:
        return self.pipeline / self.script


@dataclass
class Results:
    rounds: dict[str, list[Round]] = field(default_factory=lambda: {c: [] for c in CONSTRAINTS})
    seconds: dict[str, float] = field(default_factory=dict)  # last round's duration

    def clean(self, c: str, limit: float) -> list[Round]:
        return [r for r in self.rounds[c] if r.noise is not None and r.noise <= limit]


def summarize(rounds: list[Round]) -> tuple[float, float, float]:
    return (
        statistics.median(r.pipeline for r in rounds),
        statistics.median(r.script for r in rounds),
        statistics.median(r.ratio for r in rounds),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both arms)")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per constraint")
    parser.add_argument("--steps", type=int, default=None, help="generator steps per run")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="seconds after which no further round starts (quick: 48, else 900)",
    )
    parser.add_argument(
        "--noise-cores",
        type=float,
        default=0.25,
        help="a run is disturbed when other processes used more cores than this",
    )
    parser.add_argument(
        "--full-runs",
        action="store_true",
        help="let pipeline runs finish (final evaluation, artifacts; outside the window)",
    )
    args = parser.parse_args(argv)
    steps = args.steps or (15 if args.quick else 60)
    budget = args.budget if args.budget is not None else (48.0 if args.quick else 900.0)
    if steps <= WARMUP_STEPS:
        parser.error(f"--steps must be above the {WARMUP_STEPS} warm-up step(s)")
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    torch.set_num_threads(args.threads)
    measured = steps - WARMUP_STEPS
    t0 = time.perf_counter()
    results = Results()

    with tempfile.TemporaryDirectory(prefix="gan-overhead-") as tmp:
        tmp_path = Path(tmp)
        tracking = TrackingSettings(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            artifact_location=str(tmp_path / "artifacts"),
            experiment_name="overhead-benchmark",
        )
        counter = iter(range(1_000_000))

        def run_pipe(constraint: str, n: int) -> tuple[float, float | None]:
            workdir = tmp_path / f"run{next(counter)}"
            workdir.mkdir()
            return pipeline_run(constraint, n, tracking, workdir, full_run=args.full_runs)

        def one_round(constraint: str) -> None:
            start = time.perf_counter()
            done = len(results.rounds[constraint])
            order = ("pipeline", "script") if done % 2 == 0 else ("script", "pipeline")
            sps: dict[str, float] = {}
            noise: list[float | None] = []
            for arm in order:
                run = run_pipe if arm == "pipeline" else script_run
                seconds, others = run(constraint, steps)
                sps[arm] = measured / seconds
                noise.append(others)
            known = [x for x in noise if x is not None]
            results.rounds[constraint].append(
                Round(sps["pipeline"], sps["script"], max(known) if known else None)
            )
            results.seconds[constraint] = time.perf_counter() - start

        # warm-up of both arms (the first pipeline run also creates the MLflow store)
        for constraint in CONSTRAINTS:
            run_pipe(constraint, WARMUP_RUN_STEPS)
            script_run(constraint, WARMUP_RUN_STEPS)
        # the planned rounds, constraints interleaved so a burst of load spreads out
        # (past the budget only the first round of each constraint is still run)
        for r in range(args.rounds):
            for constraint in CONSTRAINTS:
                if r and time.perf_counter() - t0 + results.seconds[constraint] > budget:
                    continue
                one_round(constraint)
        # re-run disturbed rounds while the budget allows
        while True:
            short = [
                c for c in CONSTRAINTS if len(results.clean(c, args.noise_cores)) < args.rounds
            ]
            if not short:
                break
            c = min(short, key=lambda c: len(results.clean(c, args.noise_cores)))
            if time.perf_counter() - t0 + results.seconds[c] > budget:
                break
            one_round(c)
    wall = time.perf_counter() - t0

    pipe: dict[str, float] = {}
    script: dict[str, float] = {}
    ratio: dict[str, float] = {}
    noisy: list[str] = []
    print(
        f"overhead: pipeline (tracking on, MLflow SQLite) vs hand-written loop, "
        f"{args.threads} torch threads, {steps} generator steps per run, "
        f"{args.rounds} interleaved rounds per constraint (+ re-runs of disturbed ones)"
    )
    print(
        f"window: generator steps {WARMUP_STEPS + 1}..{steps} of each run ({measured} "
        f"steps), incl. the pipeline's metric buffering + MLflow flush; excl. setup, final "
        f"evaluation, end-of-run artifacts"
    )
    header = (
        f"{'constraint':<17} {'pipeline/s':>10} {'script/s':>9} {'ratio':>6} "
        f"{'clean':>5}  per-round ratio (other processes' cores)"
    )
    print(header)
    print("-" * len(header))
    for c in CONSTRAINTS:
        clean = results.clean(c, args.noise_cores)
        used = clean or results.rounds[c]
        if not clean:
            noisy.append(c)
        pipe[c], script[c], ratio[c] = summarize(used)
        detail = " ".join(
            f"{r.ratio:.3f}({'?' if r.noise is None else f'{r.noise:.2f}'})"
            for r in results.rounds[c]
        )
        n_clean = f"{len(clean)}/{len(results.rounds[c])}"
        print(f"{c:<17} {pipe[c]:>10.2f} {script[c]:>9.2f} {ratio[c]:>6.3f} {n_clean:>5}  {detail}")
    print(
        f"steps/s: median over the clean rounds; ratio: median of per-round pipeline ÷ script; "
        f"a round is clean when other processes used ≤ {args.noise_cores} cores; "
        f"wall {wall:.1f} s"
    )
    if noisy:
        print(
            f"WARNING: no undisturbed round for {', '.join(noisy)}: other processes were "
            f"using the CPU; those figures are unreliable (all rounds used)"
        )

    result: dict[str, Any] = {
        "benchmark": "overhead",
        "ratio": round(min(ratio.values()), 4),
        "ratios": {c: round(v, 4) for c, v in ratio.items()},
        "pipeline_steps_per_s": {c: round(v, 3) for c, v in pipe.items()},
        "script_steps_per_s": {c: round(v, 3) for c, v in script.items()},
        "threads": args.threads,
        "quick": bool(args.quick),
    }
    line = json.dumps(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = RESULTS.with_name(RESULTS.name + ".tmp")
    tmp_file.write_text(line + "\n")
    os.replace(tmp_file, RESULTS)
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
