"""The ``pipeline`` command line: ``train``, ``plugins``, ``ui``, …"""

from __future__ import annotations

import json
import os
import sys

import click

from pipeline.cli.group import DEBUG_ENV, PipelineGroup
from pipeline.cli.options import override_option, with_tracking_options, with_worker_options
from pipeline.cli.progress import Lines, TuneBar, in_terminal
from pipeline.errors import PipelineError
from pipeline.tracking.urls import mask_url
from pipeline.tuning.factories import DEFAULT_PRUNER, DEFAULT_SAMPLER, PRUNERS, SAMPLERS

# MLflow telemetry stays off unless the user turned it on (see pipeline.tracking.client).
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


@click.group(cls=PipelineGroup)
@click.version_option(package_name="gan-pipeline")
@click.option(
    "--plugin",
    "plugin_modules",
    multiple=True,
    metavar="MODULE",
    help="Also load this plugin module (dotted name or .py file) that is not installed as a "
    "package (repeatable; also GAN_PIPELINE_PLUGINS=a,b).",
)
@click.option(
    "--block",
    "blocked",
    multiple=True,
    metavar="NAME",
    help="Never load the plugin NAME: an entry-point name, a module or a whole package "
    "(repeatable; also GAN_PIPELINE_BLOCK=a,b).",
)
@click.option(
    "--no-autoload",
    is_flag=True,
    help="Load only the built-in plugins and --plugin modules, no installed third-party "
    "package (also GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD=1).",
)
@click.option(
    "--debug",
    is_flag=True,
    help=f"Show the traceback of an unforeseen failure (also {DEBUG_ENV}=1).",
)
def main(plugin_modules, blocked, no_autoload, debug) -> None:
    """Compare GAN losses and critic constraints: train, tune, browse."""
    if debug:
        os.environ[DEBUG_ENV] = "1"
    from pipeline.host.registry import RegistryOptions, configure_default_registry

    configure_default_registry(
        RegistryOptions.from_env(
            block=blocked, plugins=plugin_modules, autoload=False if no_autoload else None
        )
    )


@main.command()
@click.argument("experiment_file", type=click.Path(dir_okay=False))
@override_option
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N (default: train.device).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option(
    "--resume",
    default=None,
    metavar="CHECKPOINT|runs:/RUN_ID",
    help="Continue from a checkpoint file or a run's checkpoint (same settings, more steps).",
)
@with_tracking_options
def train(
    experiment_file,
    overrides,
    device,
    no_progress,
    resume,
    tracking_flags,
) -> None:
    """Train one experiment file as one MLflow run."""
    from pipeline.experiment.config import load_experiment
    from pipeline.host.registry import default_registry

    registry = default_registry()
    if device is not None:
        overrides = (*overrides, f"train.device={device}")
    exp = load_experiment(experiment_file, overrides, registry=registry)
    from pipeline.training.cores import set_torch_threads
    from pipeline.training.device import resolve_device  # torch: only for a valid file
    from pipeline.training.run import run_training

    resolve_device(exp.train.device)  # a bad device is bad input: fail before any run exists
    set_torch_threads()  # the usable cores (quota included), unless OMP_NUM_THREADS is set
    tracking = tracking_flags.load()
    from pipeline.stores.storage import check_artifact_location

    check_artifact_location(tracking, tracking.experiment_name or exp.name)
    state = None
    extra_tags = {}
    if resume is not None:
        from pipeline.training.resume import check_resumable, load_resume

        state = load_resume(resume, tracking)
        check_resumable(exp, state)
        extra_tags = {"resumed_from": resume, "resumed_at_step": str(state["step"])}
    try:
        result = run_training(
            exp,
            tracking=tracking,
            progress=not no_progress,
            resume_state=state,
            extra_tags=extra_tags,
        )
    except KeyboardInterrupt as exc:
        from pipeline.training.interrupt import TrainingInterrupted

        if isinstance(exc, TrainingInterrupted) and exc.finished:
            click.echo(f"{exc}: run {exc.run_id} FINISHED", err=True)
        elif isinstance(exc, TrainingInterrupted) and exc.run_id:
            click.echo(
                f"{exc}: run {exc.run_id} marked KILLED; continue it with "
                f"--resume runs:/{exc.run_id}",
                err=True,
            )
        elif getattr(exc, "run_id", None):  # a second Ctrl-C: stopped at once
            click.echo(f"interrupted: run {exc.run_id} marked KILLED", err=True)
        else:  # before the run existed (the store being opened or created: it stays whole)
            click.echo("interrupted while starting, before any run: nothing to resume", err=True)
        sys.exit(130)
    metrics = ", ".join(f"{k}={v:.4g}" for k, v in result.metrics.items())
    click.echo(f"finished {result.steps} steps in {result.wall_time_s:.1f} s: {metrics}")
    click.echo(
        f"MLflow run {result.run_id} in {mask_url(tracking.tracking_uri)} "
        f"(experiment {tracking.experiment_name or exp.name!r}); browse with: pipeline ui"
    )


@main.command()
@click.argument("experiment_file", type=click.Path(dir_okay=False))
@override_option
@click.option(
    "--n-trials",
    type=int,
    default=None,
    help="Trials to run now (default: 20 unless --timeout is given).",
)
@click.option(
    "--timeout", type=float, default=None, help="Stop starting trials after this many seconds."
)
@click.option("--study-name", default=None, help="Optuna study (default: the experiment's name).")
@click.option(
    "--storage",
    default=None,
    help="Optuna storage URL (sqlite://, postgresql://, "
    "redis://) or journal file path (default: optuna.journal beside mlflow.db).",
)
@click.option(
    "--sampler",
    type=click.Choice(list(SAMPLERS)),
    default=DEFAULT_SAMPLER,
    show_default=True,
)
@click.option(
    "--pruner",
    type=click.Choice(list(PRUNERS)),
    default=DEFAULT_PRUNER,
    show_default=True,
)
@click.option(
    "--seed",
    type=int,
    default=None,
    help="The sampler's seed; on a study that already holds k trials, seed + k * 1000003 "
    "(a rerun continues the draws instead of repeating them).",
)
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N.")
@click.option(
    "--n-jobs",
    type=int,
    default=1,
    show_default=True,
    help="Trials run at once in this process (threads).",
)
@click.option(
    "--population",
    type=int,
    default=None,
    help="Train this many trials at once as one vectorised model (mlp nets; see README).",
)
@with_worker_options
@with_tracking_options
def tune(
    experiment_file,
    overrides,
    n_trials,
    timeout,
    study_name,
    storage,
    sampler,
    pruner,
    seed,
    device,
    n_jobs,
    population,
    workers,
    gpus,
    worker_index,
    tracking_flags,
) -> None:
    """Search the experiment's `tune:` space with Optuna; every trial is an MLflow run.

    Run it again with the same study name to go on with the same study; run it in
    several shells (or machines, with a shared --storage), or with --workers N, to add
    workers (docs/scaling.md).
    """
    from pipeline.host.registry import default_registry
    from pipeline.tuning.tuner import TuneOptions, Tuner

    if n_trials is None and timeout is None:
        n_trials = 20
    if population is not None and (workers not in (None, 1) or gpus is not None):
        raise PipelineError("--population runs in one process: not with --workers or --gpus")
    tracking = tracking_flags.load()
    options = TuneOptions(
        n_trials=n_trials,
        timeout=timeout,
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        seed=seed,
        device=device,
        n_jobs=n_jobs,
    )

    lines: Lines = Lines()

    def echo(text: str) -> None:
        prefix = "" if worker_index is None else f"[worker {worker_index}] "
        lines.write("\n".join(prefix + line for line in text.splitlines()))

    registry = default_registry()
    tuner = Tuner(
        experiment_file, overrides, options, registry=registry, tracking=tracking, echo=echo
    )
    if worker_index is not None or population is not None:
        workers = 1
    elif workers is None:  # one per usable core on CPU (pipeline/training/cores.py)
        from pipeline.tuning.workers import default_workers_for

        workers = default_workers_for(tuner.base_experiment.train.device, n_jobs, n_trials)
    # a bar in a terminal (trials, best so far, the running trial's step); plain lines to
    # a file, a pipe, a worker, or with populations and worker processes
    if worker_index is None and workers == 1 and gpus is None and population is None:
        if in_terminal():
            lines = tuner.progress = TuneBar()
    if population is not None:
        from pipeline.tuning.population.tune import PopulationTuner

        runner = PopulationTuner(tuner, population)
    if workers != 1 or gpus is not None:
        from pipeline.tuning.workers import tune_in_workers

        code = tune_in_workers(click.get_current_context(), tuner, workers, gpus, echo)
        if code == 0:
            click.echo(f"browse with: pipeline ui {tuner.experiment_name}")
        sys.exit(code)
    try:
        (runner if population is not None else tuner).run()
    except KeyboardInterrupt:
        click.echo("interrupted: the study keeps every finished trial", err=True)
        sys.exit(130)
    if worker_index is None:
        click.echo(f"browse with: pipeline ui {tuner.experiment_name}")


@main.command()
@click.argument("study_name")
@click.option(
    "--storage", default=None, help="Optuna storage (default: optuna.journal beside mlflow.db)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@with_tracking_options
def best(study_name, storage, as_json, tracking_flags) -> None:
    """The best trial of a study: its value, params and MLflow run.

    A trial runs without figures and generator model; the best one gets them here when it
    lacks them (a tune that was interrupted or is still running), and its generator's
    model URI is shown.
    """
    from pipeline.tuning.best import best_report, complete_best_run

    tracking = tracking_flags.load()
    report = best_report(study_name, storage, tracking)
    studies = list(report["variants"].values()) if "comparison" in report else [report]
    for one in studies:  # a comparison (pipeline compare): the best of each variant's study
        if one.get("best_run_id"):
            note = complete_best_run(one, tracking)
            if note:
                click.echo(note, err=True)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for variant, one in report.get("variants", {}).items():
        click.echo(f"== {variant}")
        _echo_best(one)
    if "comparison" not in report:
        _echo_best(report)


def _echo_best(report: dict) -> None:
    trials = ", ".join(f"{n} {s.lower()}" for s, n in report["trials"].items() if n)
    click.echo(f"study {report['study']} ({report['storage']}): {trials}")
    if "best_trial" not in report:
        click.echo("no completed trial yet")
        return
    click.echo(
        f"best trial {report['best_trial']}: {report['objective']} = "
        f"{report['best_value']:.6g} ({report['direction']})"
    )
    for k, v in report["best_params"].items():
        click.echo(f"  {k} = {v}")
    click.echo(f"MLflow run {report['best_run_id']} (parent {report['parent_run_id']})")
    if report.get("best_model_uri"):
        click.echo(f"generator: {report['best_model_uri']}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def plugins(as_json: bool) -> None:
    """List every registered plugin: kind, name, package and version, hooks.

    Entry points that were not loaded (blocked, autoload off) and hook implementations
    that match no hook of the contract are reported on stderr.
    """
    from pipeline.host.registry import default_registry

    registry = default_registry()
    rows = [
        {
            "name": i.name,
            "kind": i.kind,
            "package": "built-in" if i.builtin else i.package,
            "version": i.version,
            "module": i.module,
            "hooks": list(i.hooks),
            "description": i.cls.description,
        }
        for i in registry.all()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        headers = ("kind", "name", "package", "version", "hooks", "description")
        table = [
            [", ".join(r[h]) if isinstance(r[h], list) else str(r[h] or "-") for h in headers]
            for r in rows
        ]
        widths = [max(len(h), *(len(row[i]) for row in table)) for i, h in enumerate(headers)]
        click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
        click.echo("  ".join("-" * w for w in widths))
        for row in table:
            click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    for skipped in registry.skipped:
        origin = f"{skipped.package} {skipped.version}".strip()
        click.echo(f"not loaded: {skipped.name} ({origin}): {skipped.reason}", err=True)
    for problem in registry.problems():
        click.echo(f"warning: {problem}", err=True)


from pipeline.cli.compare import compare  # noqa: E402  (its own module: pipeline compare)
from pipeline.cli.retrain import retrain  # noqa: E402  (its own module: pipeline retrain)
from pipeline.cli.sync import sync  # noqa: E402  (its own module: pipeline sync)
from pipeline.cli.ui import ui  # noqa: E402  (its own module: pipeline ui)

main.add_command(compare)
main.add_command(retrain)
main.add_command(sync)
main.add_command(ui)

if __name__ == "__main__":  # pragma: no cover
    main()
