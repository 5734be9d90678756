"""Trials per hour of ``pipeline tune --population K`` against one trial at a time.

The same study (``experiments/wgan_gp_grid25.yaml``: WGAN-GP on grid25, n_critic and λ
searched; 3×``--width`` MLPs), the same budget per trial (``--steps`` generator steps,
four evaluations), the random sampler with one seed and no pruner (so every arm trains
every trial to the end), each arm a complete tune in a fresh MLflow SQLite store and
Optuna journal, run in-process through the same classes as ``pipeline tune`` (tracking
on: each trial's child run with its full record). Arms:

- ``one``: one trial at a time (``Tuner.run``), as many trials as the largest population
  arm unless ``--trials-one`` says otherwise (on a GPU at K = 128);
- ``population_K`` for each K of ``--population``: ``PopulationTuner`` with K slots,
  ``--fill`` × K trials (so the population is full for most of the run);
- ``workers_N`` (``--workers N``): ``pipeline tune --workers N`` through the CLI, tracked
  (skipped, with the reason, when ``--tracking`` is off: the CLI always tracks).

With ``--n-critic N`` every trial trains N critic steps a generator step and λ alone is
searched (``workers.lambda_only``): a population steps its critic max(n_critic) times
for every member, masking out those with fewer, so with n_critic searched over 1–10 the
population arm does more critic work than the one arm (about 1.7× expected over 8
members, 1.88× for the 16 trials the random sampler draws here); a fixed n_critic measures
the stacked step alone.

Trials per hour = trials / wall seconds × 3600. Rounds interleave the arms (the order
rotates each round); the result is the median over rounds of each arm's trials/hour and
of each ratio to ``one``. ``--device cuda`` runs on the GPU (``benchmarks/gpu.sh``).

Usage: ``python benchmarks/population.py [--quick] [--rounds R] [--population 8 32]
[--n-critic N] [--device cpu|cuda] [--tracking on|off|auto] [--out PATH]``. The last line of
stdout is one line of JSON, also written to ``--out`` (default
``benchmarks/results/population.json``).
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

import torch
import yaml
from workers import lambda_only

from pipeline.host.registry import default_registry
from pipeline.tracking.client import TrackingSettings
from pipeline.tuning.population.tune import PopulationTuner
from pipeline.tuning.tuner import TuneOptions, Tuner

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "wgan_gp_grid25.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "population.json"


def overrides(steps: int, width: int) -> list[str]:
    return [
        f"train.steps={steps}",
        f"train.eval_every={max(1, steps // 4)}",
        f"train.log_every={min(25, steps)}",
        f"model.g_width={width}",
        f"model.d_width={width}",
    ]


def experiment_for(args: argparse.Namespace, folder: Path) -> Path:
    """The study's experiment file: :data:`EXPERIMENT`, or with ``--n-critic`` a copy with
    that n_critic and λ alone searched."""
    if args.n_critic is None:
        return EXPERIMENT
    experiment = lambda_only(folder)
    spec = yaml.safe_load(experiment.read_text())
    spec["train"]["n_critic"] = args.n_critic
    experiment.write_text(yaml.safe_dump(spec, sort_keys=False))
    return experiment


def tune_arm(arm: str, trials: int, args: argparse.Namespace) -> float:
    """Wall seconds of one complete tune of ``trials`` trials for ``arm``."""
    registry = default_registry()
    with tempfile.TemporaryDirectory(prefix="bench-population-") as tmp:
        experiment = experiment_for(args, Path(tmp))
        tracking = None
        if args.tracking:
            tracking = TrackingSettings(
                tracking_uri=f"sqlite:///{tmp}/mlflow.db", artifact_location=f"{tmp}/artifacts"
            )
        if arm.startswith("workers_"):
            return workers_arm(int(arm.split("_")[1]), trials, args, Path(tmp), experiment)
        options = TuneOptions(
            n_trials=trials,
            storage=f"{tmp}/optuna.journal",
            seed=0,
            sampler="random",
            pruner="none",
            device=args.device,
        )
        tuner = Tuner(
            experiment,
            overrides(args.steps, args.width),
            options,
            registry=registry,
            tracking=tracking,
            echo=lambda line: None,
        )
        start = time.perf_counter()
        if arm.startswith("population_"):
            PopulationTuner(tuner, int(arm.split("_")[1])).run()
        else:
            tuner.run()
        if args.device.startswith("cuda"):
            torch.cuda.synchronize()
        return time.perf_counter() - start


def workers_arm(
    workers: int, trials: int, args: argparse.Namespace, tmp: Path, experiment: Path
) -> float:
    """Wall seconds of ``pipeline tune --workers N`` on the same study and budget, in its own
    processes (tracked into ``tmp``; each worker gets cores // N threads)."""
    exe = os.path.join(os.path.dirname(sys.executable), "pipeline")
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    command = [exe, "tune", str(experiment), "--workers", str(workers)]
    command += ["--n-trials", str(trials), "--sampler", "random", "--seed", "0"]
    command += ["--pruner", "none", "--device", args.device]
    command += ["--storage", str(tmp / "optuna.journal")]
    for o in overrides(args.steps, args.width):
        command += ["-o", o]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny budget: checks it runs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--population", type=int, nargs="+", default=[8])
    parser.add_argument("--workers", type=int, default=2, help="0: no workers arm")
    parser.add_argument("--steps", type=int, default=None, help="generator steps per trial")
    parser.add_argument("--width", type=int, default=128, help="MLP width of both nets")
    parser.add_argument("--trials-one", type=int, default=None, help="trials of the one arm")
    parser.add_argument("--fill", type=int, default=2, help="population arms: fill × K trials")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--n-critic", type=int, default=None, help="every trial's n_critic (λ alone searched)"
    )
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default 2)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--tracking",
        choices=["on", "off", "auto"],
        default="on",
        help="MLflow child runs per trial; auto: on where mlflow is installed",
    )
    args = parser.parse_args()
    if args.tracking == "auto":
        import importlib.util

        args.tracking = "on" if importlib.util.find_spec("mlflow") else "off"
    args.tracking = args.tracking == "on"
    if args.quick:
        args.rounds, args.steps = 1, args.steps or 8
        args.width = min(args.width, 32)
    args.steps = args.steps or 300
    torch.set_num_threads(args.threads or min(2, os.cpu_count() or 1))
    population_trials = {f"population_{k}": args.fill * k for k in args.population}
    # the same trials in every arm unless told (a tune's fixed cost, about 5-10 s for the
    # store, the parent run and the best trial's figures, then weighs the same)
    trials_one = args.trials_one or max(population_trials.values())
    arms = {"one": trials_one} | population_trials
    skipped: dict[str, str] = {}
    if args.workers:
        if args.tracking:
            arms[f"workers_{args.workers}"] = trials_one
        else:  # the CLI's workers always track
            skipped[f"workers_{args.workers}"] = "--workers always tracks (--tracking off here)"
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    names = list(arms)
    for r in range(args.rounds):
        order = names[r % len(names) :] + names[: r % len(names)]
        for arm in order:
            wall = tune_arm(arm, arms[arm], args)
            rates[arm].append(arms[arm] / wall * 3600)
            print(f"round {r}: {arm}: {arms[arm]} trials in {wall:.1f} s", flush=True)
            # written after every arm: a run cut short (gpu.sh's timeout) keeps what it has
            result = summarise(rates, arms, skipped, args)
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


def summarise(
    rates: dict[str, list[float]],
    arms: dict[str, int],
    skipped: dict[str, str],
    args: argparse.Namespace,
) -> dict[str, object]:
    """Medians over the rounds run so far (arms not yet run are left out)."""
    done = {arm: v for arm, v in rates.items() if v}
    per_hour = {arm: round(statistics.median(v), 1) for arm, v in done.items()}
    ratios = {}
    if "one" in done:
        for arm, v in done.items():
            if arm != "one":
                pairs = list(zip(v, done["one"], strict=False))
                ratios[arm] = round(statistics.median(a / b for a, b in pairs), 3)
    return {
        "benchmark": "population",
        "device": args.device,
        "trials_per_hour": per_hour,
        "ratio_to_one": ratios,
        "skipped": skipped,
        "trials": arms,
        "steps": args.steps,
        "width": args.width,
        "n_critic": args.n_critic if args.n_critic is not None else "searched 1-10",
        "rounds": max(len(v) for v in rates.values()),
        "threads": torch.get_num_threads(),
        "tracking": args.tracking,
        "quick": args.quick,
        "torch": torch.__version__,
    }


if __name__ == "__main__":
    main()
