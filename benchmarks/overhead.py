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
from pathlib import Path
from typing import Any

import torch
from reference_loop import CONSTRAINTS
from reference_loop import train as script_train

from pipeline.config import Experiment, load_yaml, validate
from pipeline.registry import default_registry
from pipeline.tracking import RunTracker, TrackingSettings
from pipeline.train import Trainer, run_tags

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "wgan_gp_grid25.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "overhead.json"
SEED = 0


class _WindowClosed(Exception):
    """Raised at the start of the final evaluation when the run is stopped there."""


class TimedTrainer(Trainer):
    """The pipeline's ``Trainer``, unchanged, with two clock readings added: after the
    last warm-up step and at the start of the final evaluation."""

    warmup_steps = 1
    #: skip the final evaluation and end-of-run artifacts (they are outside the window)
    stop_at_eval = True
    window_start: float | None = None
    window_end: float | None = None

    def train_step(self, measure: bool):
        out = super().train_step(measure)
        if self.step == self.warmup_steps:
            self.window_start = time.perf_counter()
        return out

    def evaluate(self):
        if self.step == self.cfg.steps and self.window_end is None:
            self.window_end = time.perf_counter()
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
    warmup: int,
    tracking: TrackingSettings,
    workdir: Path,
    *,
    full_run: bool = False,
) -> float:
    """One tracked pipeline run, set up as ``run_training`` does; seconds of the window."""
    exp = experiment_for(constraint, steps)
    trainer = TimedTrainer(exp, device="cpu", workdir=workdir, progress=False)
    trainer.warmup_steps = warmup
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
    assert trainer.window_start is not None and trainer.window_end is not None
    return trainer.window_end - trainer.window_start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (under a minute)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads (both arms)")
    parser.add_argument("--rounds", type=int, default=None, help="measured rounds per arm")
    parser.add_argument("--steps", type=int, default=None, help="generator steps per run")
    parser.add_argument(
        "--full-runs",
        action="store_true",
        help="let pipeline runs finish (final evaluation, artifacts; outside the window)",
    )
    args = parser.parse_args(argv)

    steps = args.steps or (15 if args.quick else 60)
    rounds = args.rounds or 3
    warmup = 1
    warmup_run_steps = 3
    if steps <= warmup:
        parser.error(f"--steps must be above the {warmup} warm-up step(s)")
    torch.set_num_threads(args.threads)
    measured = steps - warmup

    wall_start = time.perf_counter()
    pipe: dict[str, list[float]] = {c: [] for c in CONSTRAINTS}
    script: dict[str, list[float]] = {c: [] for c in CONSTRAINTS}
    ratios: dict[str, list[float]] = {c: [] for c in CONSTRAINTS}
    with tempfile.TemporaryDirectory(prefix="gan-overhead-") as tmp:
        tmp_path = Path(tmp)
        tracking = TrackingSettings(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}",
            artifact_location=str(tmp_path / "artifacts"),
            experiment_name="overhead-benchmark",
        )
        run_index = 0

        def run_pipe(constraint: str, n: int) -> float:
            nonlocal run_index
            run_index += 1
            workdir = tmp_path / f"run{run_index}"
            workdir.mkdir()
            return pipeline_run(constraint, n, warmup, tracking, workdir, full_run=args.full_runs)

        for constraint in CONSTRAINTS:
            # warm-up of both arms (the first one also creates the MLflow store)
            run_pipe(constraint, warmup_run_steps)
            script_train(constraint, warmup_run_steps, seed=SEED, warmup_steps=warmup)
            for r in range(rounds):
                order = ("pipeline", "script") if r % 2 == 0 else ("script", "pipeline")
                sps: dict[str, float] = {}
                for arm in order:
                    if arm == "pipeline":
                        seconds = run_pipe(constraint, steps)
                    else:
                        seconds = script_train(constraint, steps, seed=SEED, warmup_steps=warmup)
                    sps[arm] = measured / seconds
                pipe[constraint].append(sps["pipeline"])
                script[constraint].append(sps["script"])
                ratios[constraint].append(sps["pipeline"] / sps["script"])
    wall = time.perf_counter() - wall_start

    med_pipe = {c: statistics.median(v) for c, v in pipe.items()}
    med_script = {c: statistics.median(v) for c, v in script.items()}
    med_ratio = {c: statistics.median(v) for c, v in ratios.items()}

    print(
        f"overhead: pipeline (tracking on, MLflow SQLite) vs hand-written loop, "
        f"{args.threads} torch threads, {rounds} interleaved rounds, {steps} generator "
        f"steps per run"
    )
    print(
        f"window: generator steps {warmup + 1}..{steps} of each run ({measured} steps), "
        f"incl. the pipeline's metric buffering + MLflow flush; excl. setup, final "
        f"evaluation, end-of-run artifacts"
    )
    header = f"{'constraint':<18} {'pipeline/s':>10} {'script/s':>9} {'ratio':>6}  per-round ratios"
    print(header)
    print("-" * len(header))
    for c in CONSTRAINTS:
        rounds_text = " ".join(f"{x:.3f}" for x in ratios[c])
        print(
            f"{c:<18} {med_pipe[c]:>10.2f} {med_script[c]:>9.2f} {med_ratio[c]:>6.3f}  "
            f"{rounds_text}"
        )
    print(f"ratio = median over rounds of pipeline ÷ script steps/s; wall {wall:.1f} s")
    try:
        load = os.getloadavg()
        print(f"load average (1/5/15 min): {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    except OSError:
        pass

    result: dict[str, Any] = {
        "benchmark": "overhead",
        "ratio": round(min(med_ratio.values()), 4),
        "ratios": {c: round(v, 4) for c, v in med_ratio.items()},
        "pipeline_steps_per_s": {c: round(v, 3) for c, v in med_pipe.items()},
        "script_steps_per_s": {c: round(v, 3) for c, v in med_script.items()},
        "threads": args.threads,
        "quick": bool(args.quick),
    }
    line = json.dumps(result)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp_file = RESULTS.with_name(RESULTS.name + ".tmp")
    tmp_file.write_text(line + "\n")
    os.replace(tmp_file, RESULTS)
    sys.stdout.flush()
    print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
