"""What ``pipeline tune`` reports: a line per trial, the closing summary, and the study's
trials table and Optuna plots logged to the study's MLflow parent run."""

from __future__ import annotations

import tempfile
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pipeline.tracking.client import RunTracker
    from pipeline.tuning.search_space import SearchSpace


def best_trial(study):
    """The study's best COMPLETE trial, or None while it has none."""
    import optuna

    done = [t for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]
    if not done:
        return None
    try:
        return study.best_trial
    except ValueError:
        return None


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trial_line(trial, metric: str) -> str:
    """One finished trial as the line ``pipeline tune`` prints for it."""
    params = " ".join(f"{k}={_fmt(v)}" for k, v in trial.params.items())
    state = trial.state.name
    if state == "COMPLETE":
        result = f"{metric}={_fmt(trial.value)}"
    elif state == "PRUNED":
        result = f"at step {trial.user_attrs.get('pruned_at_step', '?')}"
    else:
        result = ""
    seconds = trial.duration.total_seconds() if trial.duration else float("nan")
    line = f"trial {trial.number:4d}  {state:<8} {result:<18} {params}  ({seconds:.1f} s)"
    if state == "FAIL" and "fail_reason" in trial.user_attrs:
        line += f"\n  {trial.user_attrs['fail_reason']}"
    return line


def summary(study, metric: str, wall: float) -> str:
    """The lines ``pipeline tune`` ends with: the study's trial counts and its best trial."""
    import optuna

    from pipeline.stores import dead_trials

    counts = dead_trials.state_counts(study)
    parts = ", ".join(f"{n} {s.lower()}" for s, n in sorted(counts.items()))
    best = best_trial(study)
    line = f"{len(study.trials)} trials in the study ({parts}); this run took {wall:.0f} s"
    if best is not None:
        params = " ".join(f"{k}={_fmt(v)}" for k, v in best.params.items())
        line += f"\nbest: trial {best.number}, {metric}={_fmt(best.value)}, {params}"
        run_id = best.user_attrs.get("mlflow_run_id")
        if run_id:
            line += f", MLflow run {run_id}"
    del optuna
    return line


def log_study_artifacts(study, parent: RunTracker, space: SearchSpace) -> None:
    """Trials table (CSV) and Optuna's plots (history, importances, contour) as HTML + PNG."""
    import optuna

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        frame = study.trials_dataframe()
        frame.to_csv(out / "trials.csv", index=False)
        parent.log_artifact(out / "trials.csv")
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not complete:
            return
        names = list(space.params)
        contour = [n for n in ("train.n_critic", "constraint.weight") if n in names]
        if len(contour) < 2:
            contour = [n for n in names if space.params[n].type != "categorical"][:2]
        plots: dict[str, tuple[Callable, Callable, dict]] = {
            "optimization_history": (
                optuna.visualization.plot_optimization_history,
                optuna.visualization.matplotlib.plot_optimization_history,
                {},
            ),
        }
        if len(names) >= 2 and len(complete) >= 2:
            plots["param_importances"] = (
                optuna.visualization.plot_param_importances,
                optuna.visualization.matplotlib.plot_param_importances,
                {},
            )
        if len(contour) == 2 and len(complete) >= 2:
            plots["contour"] = (
                optuna.visualization.plot_contour,
                optuna.visualization.matplotlib.plot_contour,
                {"params": contour},
            )
        with warnings.catch_warnings(), optuna_quiet():
            warnings.simplefilter("ignore")  # the matplotlib backend is "experimental"
            for name, (html_plot, png_plot, kwargs) in plots.items():
                _save_plot(out, name, html_plot, png_plot, study, kwargs, parent)


@contextmanager
def optuna_quiet() -> Iterator[None]:
    """Optuna's log below errors, for the duration: its plots warn about what says nothing
    to the user (``Param train.n_critic unique value length is less than 2.``, from the
    contour plot when every trial had the same value of a parameter)."""
    import optuna

    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


def _save_plot(out, name, html_plot, png_plot, study, kwargs, parent) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    try:
        html_plot(study, **kwargs).write_html(out / f"{name}.html", include_plotlyjs=True)
        parent.log_artifact(out / f"{name}.html", "plots")
    except (ImportError, ValueError, RuntimeError) as exc:  # plotly missing, too few trials
        parent.set_tags({f"plot_skipped.{name}.html": str(exc)[:500]})
    try:
        # Optuna's matplotlib plots call plt.style.use("ggplot"), which would restyle every
        # later figure of this process (the best trial's curves in ggplot's grey and red)
        with matplotlib.rc_context():
            axes = png_plot(study, **kwargs)
            figure = (axes.flat[0] if hasattr(axes, "flat") else axes).figure
            figure.set_size_inches(8, 6)
            figure.savefig(out / f"{name}.png", dpi=100, bbox_inches="tight")
            plt.close(figure)
        parent.log_artifact(out / f"{name}.png", "plots")
    except (ImportError, ValueError, RuntimeError) as exc:
        parent.set_tags({f"plot_skipped.{name}.png": str(exc)[:500]})
