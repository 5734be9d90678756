"""Trials per hour of ``pipeline tune`` with 1 and with 2 worker processes (issue 11).

The same study both ways: ``experiments/wgan_gp_grid25.yaml`` searched over λ alone (the
penalty weight changes no trial's cost, so every trial costs the same whatever the
sampler draws; ``train.n_critic`` is fixed at the file's 5), ``--sampler random --seed 0``,
``--n-trials`` trials, each arm in a new folder (a new MLflow store and journal file, as a
user's first run). The 1-worker arm is ``pipeline tune --workers 1`` (one process, torch's
threads on every core); the 2-worker arm ``--workers 2`` (two processes, ``cores // 2``
threads each). ``OMP_NUM_THREADS``/``MKL_NUM_THREADS`` are removed from both arms'
environment so the command picks them.

Each arm is timed end to end (the command's wall clock: interpreter start, store creation,
every trial, the best trial's figures and the study's plots) — the trials per hour a user
gets — and over the study's span (first trial started to last trial finished, from
Optuna's timestamps), which leaves out the fixed start-up. Rounds alternate the arms (and
which goes first); the result is the median of per-round ratios ``2 workers / 1 worker``
of trials per hour. A round is *quiet* when other processes used ≤ ``--quiet-cores`` cores
during both arms (``/proc/stat`` minus this process and its children); the ratio is the
median of the quiet rounds when there are ``--rounds`` of them, else of all rounds
(``"quiet": false``). Goal: ≥ 1.8 on 2 cores.

Usage: ``python benchmarks/workers.py [--quick] [--trials N] [--steps N] [--rounds R]``.
The last line of stdout is one line of JSON, also written to
``benchmarks/results/workers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import optuna
import yaml
from overhead import cpu_snapshot

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "wgan_gp_grid25.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "workers.json"
MIN_ROUNDS = 5
GOAL = 1.8


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def tune_command(experiment: Path, args: argparse.Namespace, *extra: str) -> list[str]:
    """``pipeline tune`` of ``args.trials`` trials of ``args.steps`` steps on 3×``args.width``
    nets, random sampler seeded 0, no pruner, two evaluations a trial."""
    exe = os.path.join(os.path.dirname(sys.executable), "pipeline")
    command = [exe, "tune", str(experiment), *extra, "--n-trials", str(args.trials)]
    command += ["--sampler", "random", "--seed", "0", "--pruner", "none"]
    for o in (
        f"train.steps={args.steps}",
        f"train.eval_every={max(1, args.steps // 2)}",
        f"model.g_width={args.width}",
        f"model.d_width={args.width}",
    ):
        command += ["-o", o]
    return command


def lambda_only(folder: Path) -> Path:
    """``experiments/wgan_gp_grid25.yaml`` searched over λ alone (every trial costs the same
    whatever the sampler draws), written into ``folder``."""
    spec = yaml.safe_load(EXPERIMENT.read_text())
    spec["tune"]["params"] = {"constraint.weight": spec["tune"]["params"]["constraint.weight"]}
    experiment = folder / "wgan_gp_grid25.yaml"
    experiment.write_text(yaml.safe_dump(spec, sort_keys=False))
    return experiment


def run_arm(workers: int, experiment: Path, args: argparse.Namespace) -> dict:
    """One ``pipeline tune`` in a new folder; its wall clock, study span, others' cores."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env["MLFLOW_DISABLE_TELEMETRY"] = "true"
    command = tune_command(experiment, args, "--workers", str(workers))
    with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp:
        before, children = cpu_snapshot(), _children_cpu()
        done = subprocess.run(command, cwd=tmp, env=env, capture_output=True, text=True)
        after, children_after = cpu_snapshot(), _children_cpu()
        if done.returncode != 0:
            sys.exit(f"{' '.join(command)} failed:\n{done.stdout}\n{done.stderr}")
        journal = optuna.storages.journal.JournalFileBackend(str(Path(tmp) / "optuna.journal"))
        study = optuna.load_study(
            study_name="wgan_gp_grid25", storage=optuna.storages.JournalStorage(journal)
        )
        trials = study.trials
        assert [t.state.name for t in trials] == ["COMPLETE"] * args.trials, done.stdout
        span = max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)
    wall = after.wall - before.wall
    others = None
    if before.machine_busy_s is not None and after.machine_busy_s is not None:
        ours = (after.own_cpu_s - before.own_cpu_s) + (children_after - children)
        others = max((after.machine_busy_s - before.machine_busy_s) - ours, 0.0) / wall
    return {"wall_s": wall, "span_s": span.total_seconds(), "others_cores": others}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="4 short trials, 2 rounds")
    parser.add_argument("--trials", type=int, default=None, help="trials per arm (default 8)")
    parser.add_argument("--steps", type=int, default=None, help="steps per trial (default 600)")
    parser.add_argument("--rounds", type=int, default=None, help=f"≥ {MIN_ROUNDS} (quick: 2)")
    parser.add_argument("--max-rounds", type=int, default=None, help="default 2 × --rounds")
    parser.add_argument("--quiet-cores", type=float, default=0.25)
    parser.add_argument("--width", type=int, default=128, help="MLP width of both nets")
    args = parser.parse_args()
    args.trials = args.trials or (4 if args.quick else 8)
    args.steps = args.steps or (40 if args.quick else 600)
    rounds = args.rounds or (2 if args.quick else MIN_ROUNDS)
    if rounds < MIN_ROUNDS and not args.quick:
        parser.error(f"--rounds must be ≥ {MIN_ROUNDS} (a median of fewer is noise here)")
    max_rounds = max(args.max_rounds or 2 * rounds, rounds)

    with tempfile.TemporaryDirectory(prefix="bench-workers-exp-") as tmp:
        experiment = lambda_only(Path(tmp))
        results: list[dict[int, dict]] = []
        while len(results) < max_rounds:
            order = (1, 2) if len(results) % 2 == 0 else (2, 1)
            arms = {w: run_arm(w, experiment, args) for w in order}
            results.append(arms)
            print(
                f"round {len(results)}: "
                + ", ".join(
                    f"{w} worker(s) {arms[w]['wall_s']:.1f} s "
                    f"(span {arms[w]['span_s']:.1f} s, others {arms[w]['others_cores']:.2f})"
                    for w in (1, 2)
                ),
                file=sys.stderr,
            )
            quiet = [r for r in results if _quiet(r, args.quiet_cores)]
            if len(results) >= rounds and len(quiet) >= rounds:
                break
    quiet = [r for r in results if _quiet(r, args.quiet_cores)]
    used = quiet if len(quiet) >= rounds else results

    def ratios(key: str, rows: list[dict[int, dict]]) -> list[float]:
        return [round(r[1][key] / r[2][key], 4) for r in rows]  # trials/h: 2 workers / 1

    result = {
        "benchmark": "workers",
        "ratio": round(statistics.median(ratios("wall_s", used)), 4),
        "goal": GOAL,
        "quiet": len(quiet) >= rounds,
        "ratio_study_span": round(statistics.median(ratios("span_s", used)), 4),
        "trials_per_hour_1_worker": round(
            statistics.median(3600 * args.trials / r[1]["wall_s"] for r in used), 1
        ),
        "trials_per_hour_2_workers": round(
            statistics.median(3600 * args.trials / r[2]["wall_s"] for r in used), 1
        ),
        "ratios": ratios("wall_s", results),
        "ratios_study_span": ratios("span_s", results),
        "others_cores": [[round(r[w]["others_cores"] or 0, 2) for w in (1, 2)] for r in results],
        "quiet_cores": args.quiet_cores,
        "rounds": len(results),
        "quiet_rounds": len(quiet),
        "trials": args.trials,
        "steps": args.steps,
        "width": args.width,
        "cores": len(os.sched_getaffinity(0)),
        "quick": args.quick,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


def _quiet(round_: dict[int, dict], limit: float) -> bool:
    cores = [a["others_cores"] for a in round_.values()]
    return all(c is not None and c <= limit for c in cores)


if __name__ == "__main__":
    main()
