"""Which tuning objective picks settings that hold on new seeds? (issue 19, docs/results.md)

One study of a comparison file's variant, run by ``pipeline tune``'s own Tuner with two
seeds per trial (``tune.seeds: 2``, trial seeds s0 and s0+1, random sampler), then every
completed trial's setting re-trained on ``--new-seeds`` new seeds. For each candidate
objective, computed on the trial seeds (the first seed alone, as a one-seed study would
see it, and the mean of both, as ``tune.seeds: 2`` sees it), Spearman's ρ with the mean
high-quality share, reverse KL and modes on the new seeds: how well the objective ranks
the trials by what they give on seeds they were not picked on. Also: the new-seed metrics
of the trial each objective picks.

Resumable: the study is an Optuna journal in ``--work``, and each re-training is cached in
``retrain.json`` there; running the same command again goes on where it stopped.

    OMP_NUM_THREADS=1 python benchmarks/objective_choice.py \\
        --file experiments/compare_losses_ring8.yaml --variant gan --trials 10 \\
        --work /tmp/objective-ring8 --out benchmarks/results/objective_choice_ring8.json
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from pathlib import Path

import yaml

#: the candidates: label → weights of a weighted sum of metrics, minimized
OBJECTIVES: dict[str, dict[str, float]] = {
    # the shipped default of the 2-D files: sliced Wasserstein-1 to the data
    "w1": {"w1": 1.0},
    # coverage and quality in one number (docs/results.md, the last comparison's offer)
    "reverse_kl - hq_fraction": {"reverse_kl": 1.0, "hq_fraction": -1.0},
    # the same with the modes column too (modes/25 on grid25, modes/8 on ring8: see main)
    "reverse_kl - hq_fraction - modes/M": {"reverse_kl": 1.0, "hq_fraction": -1.0, "modes": -1.0},
    # quality alone: what the column we fall short on asks for
    "-hq_fraction": {"hq_fraction": -1.0},
}
COLUMNS = ("hq_fraction", "reverse_kl", "modes")
#: the direction in which each column is better (to pick by it)
BETTER = {"hq_fraction": "max", "reverse_kl": "min", "modes": "max", "w1": "min"}


def objective(metrics: dict[str, float], weights: dict[str, float], modes_total: int) -> float:
    scale = {"modes": 1.0 / modes_total}
    return sum(w * scale.get(k, 1.0) * metrics[k] for k, w in weights.items())


def spearman(x: list[float], y: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3 or len(set(x)) < 2 or len(set(y)) < 2:
        return math.nan
    return float(spearmanr(x, y).statistic)


def run_study(args, work: Path) -> list:
    import optuna

    from pipeline.compare.file import load_comparison
    from pipeline.host.registry import default_registry
    from pipeline.tuning.tuner import TuneOptions, Tuner

    comparison = load_comparison(args.file)
    from pipeline.experiment.config import apply_overrides

    tree = apply_overrides(comparison.variant_tree(args.variant), args.override)
    tree.setdefault("tune", {})["seeds"] = 2
    tree["name"] = f"objective-choice-{args.variant}"
    path = work / "experiment.yaml"
    path.write_text(yaml.safe_dump(tree, sort_keys=False))
    storage = str(work / "optuna.journal")
    registry = default_registry()
    journal = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(storage))
    try:
        done = len(optuna.load_study(study_name=tree["name"], storage=journal).trials)
    except KeyError:
        done = 0
    if done < args.trials:
        tuner = Tuner(
            path,
            [],
            TuneOptions(
                n_trials=args.trials - done,
                sampler="random",
                pruner="none",
                seed=args.seed + done,
                storage=storage,
            ),
            registry=registry,
            tracking=None,
            echo=print,
        )
        tuner.run()
    study = optuna.load_study(study_name=tree["name"], storage=journal)
    return [t for t in study.trials if t.state.name == "COMPLETE"], path, tree


def retrain(args, work: Path, trials, path: Path, tree: dict) -> dict[str, dict[str, dict]]:
    from pipeline.experiment.config import load_experiment
    from pipeline.host.registry import default_registry
    from pipeline.training.run import run_training

    registry = default_registry()
    cache_path = work / "retrain.json"
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    first_new = int(tree["train"].get("seed", 0)) + 2
    seeds = [first_new + i for i in range(args.new_seeds)]
    for trial in trials:
        for seed in seeds:
            key = f"{trial.number}/{seed}"
            if key in cache:
                continue
            overrides = [f"{k}={json.dumps(v)}" for k, v in trial.params.items()]
            exp = load_experiment(path, [*overrides, f"train.seed={seed}"], registry=registry)
            result = run_training(exp, tracking=None, progress=False)
            cache[key] = result.metrics
            cache_path.write_text(json.dumps(cache, indent=1))
            print(f"trial {trial.number} seed {seed}: {result.metrics}", flush=True)
    return {str(t.number): {str(s): cache[f"{t.number}/{s}"] for s in seeds} for t in trials}


def analyse(trials, new: dict[str, dict[str, dict]], modes_total: int) -> dict:
    rows = []
    for t in trials:
        by_seed = t.user_attrs["seed_metrics"]
        first, second = (by_seed[s] for s in sorted(by_seed, key=int))
        mean_trial = {k: (first[k] + second[k]) / 2 for k in first}
        fresh = list(new[str(t.number)].values())
        mean_new = {k: statistics.fmean(m[k] for m in fresh) for k in fresh[0]}
        rows.append({"trial": t.number, "params": t.params, "one_seed": first,
                     "two_seeds": mean_trial, "new": mean_new})  # fmt: skip
    table = {}
    for label, weights in OBJECTIVES.items():
        for seeds in ("one_seed", "two_seeds"):
            scores = [objective(r[seeds], weights, modes_total) for r in rows]
            entry = {
                col: spearman([-s for s in scores], [r["new"][col] for r in rows])
                * (1 if BETTER[col] == "max" else -1)
                for col in COLUMNS
            }
            best = min(range(len(rows)), key=lambda i: scores[i])
            entry["picked_trial"] = rows[best]["trial"]
            entry["picked_new"] = {c: rows[best]["new"][c] for c in COLUMNS}
            table[f"{label} [{seeds}]"] = entry
    oracle = {}
    for col in COLUMNS:
        pick = (max if BETTER[col] == "max" else min)(rows, key=lambda r: r["new"][col])
        oracle[col] = {"trial": pick["trial"], "value": pick["new"][col]}
    return {"rows": rows, "objectives": table, "best_on_new_seeds": oracle}


def markdown(result: dict) -> str:
    lines = [
        "| objective [trial seeds] | ρ high quality | ρ reverse KL | ρ modes | picked trial: "
        "modes, high quality, reverse KL on new seeds |",
        "|---|---|---|---|---|",
    ]
    for label, e in result["objectives"].items():
        p = e["picked_new"]
        cells = ["—" if math.isnan(e[c]) else f"{e[c]:+.2f}" for c in COLUMNS]
        lines.append(
            f"| {label} | "
            + " | ".join(cells)
            + f" | {e['picked_trial']}: {p['modes']:.1f}, {p['hq_fraction']:.3f}, "
            f"{p['reverse_kl']:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--file", required=True, help="a comparison file")
    parser.add_argument("--variant", required=True)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--new-seeds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0, help="the random sampler's seed")
    parser.add_argument("--work", required=True, help="folder for the study and the cache")
    parser.add_argument("--out", required=True, help="JSON result")
    parser.add_argument("-o", "--override", action="append", default=[], help="key=value")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    trials, path, tree = run_study(args, work)
    new = retrain(args, work, trials, path, tree)
    modes_total = 25 if tree["dataset"]["name"] == "grid25" else 8
    result = analyse(trials, new, modes_total)
    result["command"] = vars(args)
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(markdown(result))


if __name__ == "__main__":
    main()
