"""The figures of a ``pipeline compare`` report.

- each metric over the seeds per variant (a strip plot with mean ± standard error);
- the best objective found so far against the tuning budget, per variant, with the
  spread over bootstrap resamples of the trial order: the key figure of Lucic et al. 2018
  ("Are GANs Created Equal?", Fig. 4/5: the best score a budget of k settings buys, over
  resamples of the settings tried), which Kurach et al. 2019 use as well;
- the final samples of each variant's median seed (a 2-D scatter or an image grid).

matplotlib's object API only (``Figure``), as in :mod:`pipeline.training.plots`.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from pipeline.training.plots import DPI

if TYPE_CHECKING:
    from pipeline.compare.results import ComparisonRecord, VariantResult

#: bootstrap resamples of the trial order (Lucic et al. 2018 resample the settings tried)
BOOTSTRAP_RESAMPLES = 200
#: the band drawn around the median best-so-far curve: the central 90 % of the resamples
BAND = (5.0, 95.0)


def metrics_over_seeds(results: list[VariantResult], metrics: list[str], path: Path) -> Path:
    """One panel per metric: each seed's value per variant (jittered dots: blue circles
    for a tuned setting, orange triangles for an untuned default) and the mean ± standard
    error (a bar with caps), with a legend."""
    fig = Figure(figsize=(3.2 * len(metrics) + 0.6, 3.8), dpi=DPI)
    rng = np.random.default_rng(0)
    names = [r.name for r in results]
    for i, metric in enumerate(metrics):
        ax = fig.add_subplot(1, len(metrics), i + 1)
        for x, r in enumerate(results):
            values = [s.metrics[metric] for s in r.seeds if metric in s.metrics]
            if not values:
                continue
            style = SEED_STYLE["default" if r.default else "tuned"]
            ax.plot(x + rng.uniform(-0.12, 0.12, len(values)), values, ls="none", **style)
            if metric in r.stats:
                mean, se = r.stats[metric]
                ax.errorbar(
                    [x + 0.25],
                    [mean],
                    yerr=[0 if math.isnan(se) else se],
                    fmt="s",
                    color="black",
                    capsize=4,
                    ms=4,
                    label="mean ± s.e.",
                )
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set_xlim(-0.6, len(names) - 0.4)
        ax.set_title(metric, fontsize=10)
    handles, labels = [], []
    for ax in fig.axes:  # one legend entry per kind of mark, from whichever panel has it
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.suptitle("metrics over seeds", fontsize=10, x=0.02, y=0.985, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    fig.legend(
        handles, labels, loc="upper right", bbox_to_anchor=(1, 1), ncol=3, fontsize=8, frameon=False
    )
    fig.savefig(path)
    return path


#: how a seed's dot looks: tuned settings and untuned defaults told apart
SEED_STYLE = {
    "tuned": {"marker": "o", "ms": 4, "alpha": 0.7, "color": "tab:blue", "label": "tuned, a seed"},
    "default": {
        "marker": "^", "ms": 5, "alpha": 0.8, "color": "tab:orange", "label": "default, a seed",
    },
}  # fmt: skip


def bootstrap_best_so_far(
    values: list[float | None], maximize: bool, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0
) -> np.ndarray:
    """Best-so-far curves (resamples × trials) over trial orders drawn with replacement from
    ``values`` (None: a trial without a value, which never improves the best; NaN until a
    resample has a value)."""
    worst = -math.inf if maximize else math.inf
    pool = np.array([worst if v is None else v for v in values], dtype=float)
    rng = np.random.default_rng(seed)
    draws = pool[rng.integers(0, len(pool), size=(resamples, len(pool)))]
    best = (
        np.maximum.accumulate(draws, axis=1) if maximize else np.minimum.accumulate(draws, axis=1)
    )
    best[~np.isfinite(best)] = np.nan
    return best


def best_so_far(results: list[VariantResult], path: Path) -> Path:
    """The best objective against the trials spent, per variant: the median over
    bootstrap resamples of the trial order with its 90 % band, and the order that ran."""
    fig = Figure(figsize=(6.0, 4.0), dpi=DPI)
    ax = fig.add_subplot(1, 1, 1)
    for i, r in enumerate(results):
        if not r.values:
            continue
        color = f"C{i % 10}"
        maximize = r.direction == "maximize"
        curves = bootstrap_best_so_far(r.values, maximize)
        x = np.arange(1, len(r.values) + 1)
        with np.errstate(all="ignore"):
            finite = ~np.isnan(curves).all(axis=0)
            if finite.any():
                lo, mid, hi = np.nanpercentile(curves[:, finite], [BAND[0], 50, BAND[1]], axis=0)
                ax.fill_between(x[finite], lo, hi, color=color, alpha=0.2)
                ax.plot(x[finite], mid, color=color, label=f"{r.name} (bootstrap median)")
        order = np.array([np.nan if v is None else v for v in r.values], dtype=float)
        acc = np.fmax.accumulate(order) if maximize else np.fmin.accumulate(order)
        ax.plot(x, acc, ":", color=color, marker=".", label=f"{r.name} (as run)")
    objective = results[0].objective if results else "objective"
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("tuning budget (trials)")
    ax.set_ylabel(f"best {objective} so far")
    ax.set_title("best-so-far vs budget (Lucic et al. 2018), 90 % bootstrap band", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    return path


def median_samples(
    record: ComparisonRecord, results: list[VariantResult], folder: Path, tmp: Path
) -> list[Path]:
    """The final samples of each variant's median seed: its ``samples.npy`` drawn as a 2-D
    scatter over the data, or, for images, the run's last sample grid."""
    from pipeline.tracking.client import client_for
    from pipeline.training.trial_record import quiet_downloads

    client = client_for(record.tracking)
    out = []
    with quiet_downloads():
        for r in results:
            path = _median_sample(client, record, r, folder, tmp)
            if path is not None:
                out.append(path)
    return out


def _median_sample(
    client, record: ComparisonRecord, r: VariantResult, folder: Path, tmp: Path
) -> Path | None:
    import torch

    from pipeline.training.trial_record import figure_samples, metrics_line, sample_figure

    seed = r.median_seed()
    if seed is None or r.default:
        return None
    path = folder / f"samples_{r.name}.png"
    dataset = record.experiments[r.name].plugins["dataset"].instantiate()
    if dataset.is_image:
        pngs = sorted(a.path for a in client.list_artifacts(seed.run_id, "samples"))
        pngs = [p for p in pngs if p.endswith(".png")]
        if not pngs:
            return None
        local = client.download_artifacts(seed.run_id, pngs[-1], str(tmp))
        path.write_bytes(Path(local).read_bytes())
        return path
    local = client.download_artifacts(seed.run_id, "samples.npy", str(tmp))
    shown = figure_samples(dataset, torch.from_numpy(np.load(local, allow_pickle=False)))
    if shown is None:
        return None
    line = metrics_line(
        {k: v for k, v in seed.metrics.items() if k in record.comparison.spec.metrics}
    )
    title = f"{r.name} · median seed {seed.seed}" + (f"\n{line}" if line else "")
    plot, args, kwargs = sample_figure(dataset, shown, path, title)
    plot(*args, **kwargs)
    return path
