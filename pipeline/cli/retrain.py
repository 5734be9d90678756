"""``pipeline retrain FILE --seeds 1-5``: the command (registered in
:mod:`pipeline.cli.commands`); the work is in :mod:`pipeline.tuning.retrain` (imported when
the command runs: the CLI starts without torch)."""

from __future__ import annotations

import json
import sys

import click

from pipeline.cli.options import override_option, with_tracking_options
from pipeline.cli.progress import in_terminal


@click.command()
@click.argument("experiment_file", type=click.Path(dir_okay=False))
@override_option
@click.option(
    "--seeds", required=True, help="New seeds to train on: 1-5, 1,2,7 or 1-3,10 (train.seed)."
)
@click.option("--study-name", default=None, help="Optuna study (default: the experiment's name).")
@click.option(
    "--storage", default=None, help="Optuna storage (default: optuna.journal beside mlflow.db)."
)
@click.option(
    "--trial", "trial_number", type=int, default=None, help="This trial's setting, not the best."
)
@click.option("--device", default=None, help="auto | cpu | cuda | cuda:N.")
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    envvar="PIPELINE_WORKERS",
    help="Worker processes, the seeds dealt among them (as pipeline tune: default one per "
    "usable core on CPU, 1 thread each).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--train-only", is_flag=True, hidden=True)
@with_tracking_options
@click.pass_context
def retrain(
    ctx,
    experiment_file,
    overrides,
    seeds,
    study_name,
    storage,
    trial_number,
    device,
    workers,
    as_json,
    train_only,
    tracking_flags,
) -> None:
    """Train a study's best setting (or --trial N's) again on new seeds, and report each
    seed's metrics, mean ± standard error, and the trial's objective on its own seeds.

    Give the experiment file and overrides the study was tuned with. Each seed is an MLflow
    run under the study's run; seeds already trained are not trained again.
    """
    from pipeline.host.registry import default_registry
    from pipeline.tuning.retrain import Retrain, parse_seeds, summary_lines
    from pipeline.tuning.tuner import TuneOptions, Tuner
    from pipeline.tuning.workers import command_line, run_workers, worker_env

    wanted = parse_seeds(seeds)
    tracking = tracking_flags.load()
    options = TuneOptions(study_name=study_name, storage=storage, device=device)
    tuner = Tuner(
        experiment_file, overrides, options, registry=default_registry(), tracking=tracking
    )
    job = Retrain(tuner, trial_number, echo=click.echo)
    pending = [s for s in wanted if s not in job.finished()]
    if train_only:
        workers = 1  # one of the workers below
    elif workers is None:  # one per usable core on CPU (pipeline/training/cores.py)
        from pipeline.tuning.workers import default_workers_for

        workers = default_workers_for(tuner.base_experiment.train.device, 1, len(pending))
    if workers > 1 and len(pending) > 1:
        shares = [pending[i::workers] for i in range(min(workers, len(pending)))]
        base = command_line(ctx, skip=("seeds", "workers", "as_json", "train_only"))
        commands = [
            [
                sys.executable,
                "-m",
                "pipeline.cli",
                *base,
                "--seeds",
                ",".join(map(str, s)),
                "--train-only",
            ]
            for s in shares
        ]
        click.echo(
            f"{len(pending)} seeds in {len(commands)} workers: "
            + "; ".join(",".join(map(str, s)) for s in shares)
        )
        code, interrupted = run_workers(commands, worker_env(len(commands), 1), click.echo)
        if interrupted or code:
            click.echo("stopped: finished seeds are kept; run the command again", err=True)
            sys.exit(130 if interrupted else code)
    else:
        from pipeline.training.cores import set_torch_threads

        set_torch_threads()  # the usable cores, unless OMP_NUM_THREADS is set
        try:
            job.train(pending, progress=in_terminal() and not train_only)
        except KeyboardInterrupt:
            click.echo("interrupted: finished seeds are kept; run the command again", err=True)
            sys.exit(130)
    if train_only:
        return
    summary = job.summary(wanted)
    job.log(summary)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    else:
        for line in summary_lines(summary):
            click.echo(line)
