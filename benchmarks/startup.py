"""How long the ``pipeline`` command takes before the user sees an answer.

Each case is a real subprocess of the installed ``pipeline`` script, timed from start to
exit (wall clock):

- ``help``: ``pipeline --help`` (goal ≤ 0.5 s);
- ``plugins``: ``pipeline plugins``, which imports every plugin module (no goal: as fast
  as reasonable);
- ``refused_unknown_key``: ``pipeline train`` on ``experiments/wgan_gp_grid25.yaml`` plus
  an unknown top-level key, exit status 2 (goal ≤ 3 s);
- ``refused_bad_value``: the same file with ``constraint.weight: -1``, refused by the
  plugin's settings, so every plugin module is loaded first (exit status 2, goal ≤ 3 s);
- ``best_complete``: ``pipeline best`` on a study whose best trial already has its figures
  and generator (a 2-trial, 20-step tune of ``gan_ring8.yaml`` made once, untimed, by this
  checkout), where nothing is left to do (goal ≤ 2 s, issue 21).

Rounds interleave the cases (each round starts at the next case), after one warm-up
round that is not counted (it compiles bytecode and fills the page cache); the result is
each case's median. With ``--baseline DIR`` (another checkout, e.g.
``git worktree add /tmp/startup-base <commit>``), the same cases also run that checkout's
``pipeline`` and ``pipeline_plugins`` packages (put first on ``PYTHONPATH``, which wins
over the editable install) in the same rounds, so before and after share the machine's
load.

Usage: ``python benchmarks/startup.py [--rounds R] [--baseline DIR]``.
The last line of stdout is one line of JSON, also written to
``benchmarks/results/startup.json``.
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

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENT = ROOT / "experiments" / "wgan_gp_grid25.yaml"
RESULTS = ROOT / "benchmarks" / "results" / "startup.json"
#: seconds; from the issue: help at once, a refused experiment file within a few seconds
GOALS: dict[str, float | None] = {
    "help": 0.5,
    "plugins": None,
    "refused_unknown_key": 3.0,
    "refused_bad_value": 3.0,
    "best_complete": 2.0,
}


def pipeline_command() -> list[str]:
    """The ``pipeline`` console script beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).with_name("pipeline")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline.cli"]


def write_inputs(folder: Path) -> dict[str, tuple[list[str], int]]:
    """The arguments of each case and the exit status it must end with."""
    raw = yaml.safe_load(EXPERIMENT.read_text())
    unknown = folder / "unknown_key.yaml"
    unknown.write_text(yaml.safe_dump({**raw, "colour": "blue"}))
    bad = folder / "bad_value.yaml"
    bad.write_text(yaml.safe_dump({**raw, "constraint": {**raw["constraint"], "weight": -1}}))
    tiny = ["train.steps=20", "train.eval_every=10", "train.eval_samples=200"]
    tiny += ["model.g_width=16", "model.d_width=16", "tune.objective={metric: w1}"]
    tune = ["tune", str(ROOT / "experiments" / "gan_ring8.yaml"), "--n-trials", "2"]
    tune += ["--study-name", "timed", *(a for o in tiny for a in ("-o", o))]
    subprocess.run([*pipeline_command(), *tune], cwd=folder, capture_output=True, check=True)
    return {
        "best_complete": (["best", "timed"], 0),
        "help": (["--help"], 0),
        "plugins": (["plugins"], 0),
        "refused_unknown_key": (["train", str(unknown)], 2),
        "refused_bad_value": (["train", str(bad)], 2),
    }


def baseline_path(checkout: Path, folder: Path) -> str:
    """A folder where ``pipeline`` and ``pipeline_plugins`` are those of ``checkout``."""
    (folder / "pipeline").symlink_to(checkout / "pipeline")
    (folder / "pipeline_plugins").symlink_to(checkout / "plugins")
    return str(folder)


def time_once(args: list[str], status: int, cwd: Path, pythonpath: str | None) -> float:
    env = dict(os.environ)
    if pythonpath is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [pythonpath, env.get("PYTHONPATH")]))
    start = time.perf_counter()
    done = subprocess.run(
        [*pipeline_command(), *args], cwd=cwd, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if done.returncode != status:
        raise SystemExit(
            f"pipeline {' '.join(args)} exited {done.returncode}, expected {status}:\n"
            f"{done.stderr[-2000:]}"
        )
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument(
        "--baseline", type=Path, default=None, help="another checkout to time in the same rounds"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases = write_inputs(work)
        trees: dict[str, str | None] = {"after" if args.baseline else "current": None}
        if args.baseline is not None:
            (work / "baseline").mkdir()
            trees = {
                "before": baseline_path(args.baseline.resolve(), work / "baseline"),
                **trees,
            }
        names = list(cases)
        times: dict[str, dict[str, list[float]]] = {t: {n: [] for n in names} for t in trees}
        for r in range(args.rounds + 1):  # round 0 is the warm-up
            for i in range(len(names)):
                name = names[(r + i) % len(names)]
                order = list(trees) if (r + i) % 2 == 0 else list(reversed(trees))
                for tree in order:
                    elapsed = time_once(*cases[name], cwd=work, pythonpath=trees[tree])
                    if r > 0:
                        times[tree][name].append(elapsed)
            if r > 0:
                line = ", ".join(
                    f"{tree} {n} {times[tree][n][-1]:.2f} s" for n in names for tree in trees
                )
                print(f"round {r}: {line}", file=sys.stderr)
    result: dict = {"benchmark": "startup", "rounds": args.rounds, "goals_s": GOALS}
    for tree in trees:
        medians = {n: round(statistics.median(times[tree][n]), 3) for n in names}
        result[tree] = {
            "median_s": medians,
            "times_s": {n: [round(x, 3) for x in times[tree][n]] for n in names},
            "goals_met": {n: medians[n] <= g for n, g in GOALS.items() if g is not None},
        }
    result["cpu_count"] = os.cpu_count()
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]
    for tree in trees:
        summary = ", ".join(
            f"{n} {m} s" + (f" (goal ≤ {GOALS[n]})" if GOALS[n] is not None else "")
            for n, m in result[tree]["median_s"].items()
        )
        print(f"{tree}, median of {args.rounds} rounds: {summary}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
