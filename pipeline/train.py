"""The training loop: the one place that calls ``backward()`` and ``step()``.

n_critic critic steps per generator step; the constraint acts where it belongs (wraps
the critic at build time, adds a penalty to the critic loss, or acts after the critic
step). The hot loop keeps per-step values as device tensors and moves them to the host
once every ``train.log_every`` steps, so there is no ``.item()`` per step, no per-value
logging and no plugin lookup inside it.
"""

from __future__ import annotations

import math
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import Tensor, nn

from pipeline import plots
from pipeline.checkpoint import (
    FORMAT,
    RunCheckpoints,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from pipeline.config import Experiment
from pipeline.constraint_stack import build_constraint, has_penalty
from pipeline.errors import ConfigError, NonFiniteLossError
from pipeline.interrupt import StopRequest, TrainingInterrupted, stop_on_signals
from pipeline.registry import blame_plugins
from pipeline.tracking import RunTracker, TrackingSettings, TrackingUnavailable
from pipeline.trial_record import (
    RECORD_TAG,
    TRIAL_SEND_INTERVAL_S,
    figure_samples,
    sample_figure,
    sample_name,
    sample_title,
    window_means,
    write_per_step_csv,
)
from pipeline.types import Constraint, Dataset, Loss, Metric, ModelPair
from pipeline.unsent import keep_unsent

#: held while a training seeds torch's global RNG and initialises its nets from it
_GLOBAL_RNG = threading.Lock()

#: called after each evaluation with (generator step, metrics); may raise to stop
EvalCallback = Callable[[int, dict[str, float]], None]

#: seconds between two MLflow writes of per-step metrics in a train run (the UI lags by at
#: most this); a tuning trial's is :data:`pipeline.trial_record.TRIAL_SEND_INTERVAL_S`
SEND_INTERVAL_S = 2.0

#: per-step values kept on the device, in this order
STEP_KEYS = ("loss/critic", "loss/generator", "penalty", "wasserstein_estimate")


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; ``cuda:N`` must exist."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("train.device", f"{name!r} asked for, but CUDA is not available")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            raise ConfigError(
                "train.device", f"{name!r}: only {torch.cuda.device_count()} CUDA device(s)"
            )
    return torch.device(name)


@dataclass
class TrainResult:
    run_id: str | None
    #: metrics of the last evaluation (computed on ``samples.npy``)
    metrics: dict[str, float]
    steps: int
    wall_time_s: float
    evaluations: list[tuple[int, dict[str, float]]] = field(default_factory=list)
    #: per-step values by metric name: (steps, values)
    history: dict[str, tuple[list[int], list[float]]] = field(default_factory=dict)


class Trainer:
    """Builds the plugins of an experiment and trains them."""

    def __init__(
        self,
        experiment: Experiment,
        *,
        device: str | None = None,
        tracker: RunTracker | None = None,
        workdir: Path,
        progress: bool = True,
        on_eval: EvalCallback | None = None,
        write_artifacts: bool = True,
        trial: bool = False,
    ) -> None:
        self.exp = experiment
        #: draw plots and write samples, curves and the final checkpoint into ``workdir``
        #: (an untracked run in a temporary folder has no reader for them)
        self.write_artifacts = write_artifacts
        #: record as a tuning trial (see :mod:`pipeline.trial_record`): window means, no
        #: figures and no generator model during the run
        self.trial = trial
        self.send_interval_s = TRIAL_SEND_INTERVAL_S if trial else SEND_INTERVAL_S
        self.cfg = experiment.train
        self.device = resolve_device(device or self.cfg.device)
        self.tracker = tracker
        self.workdir = workdir
        self.progress = progress
        self.on_eval = on_eval
        self.history: dict[str, tuple[list[int], list[float]]] = {}
        #: the image grid of each evaluation, for the animated progression at the end
        self.grid_frames: list[tuple[int, np.ndarray]] = []
        self._unsent: list[tuple[str, float, int]] = []
        self._last_send = time.perf_counter()
        self.evaluations: list[tuple[int, dict[str, float]]] = []
        #: set by a signal (see :func:`pipeline.interrupt.stop_on_signals`); read between steps
        self.stop = StopRequest()
        self._build()

    # -- construction -------------------------------------------------------------
    def _build(self) -> None:
        exp, cfg = self.exp, self.cfg
        #: real batches; the training's own noise and constraint draws (GP's α): each
        #: training owns its generators, so trials in threads (``--n-jobs``) do not share
        #: torch's global RNG and a trial's seed reproduces it
        self.data_rng = torch.Generator().manual_seed(cfg.seed)
        self.train_rng = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.dataset: Dataset = exp.plugins["dataset"].instantiate()
        self.loss: Loss = exp.plugins["loss"].instantiate()
        self.constraint: Constraint = build_constraint(exp.plugins)
        self.constraint.rng = self.train_rng
        # weight initialisation (and spectral norm's first u) can only draw from the
        # global RNG: seed it and build under one lock, so concurrent builds don't interleave
        with _GLOBAL_RNG:
            torch.manual_seed(cfg.seed)
            np.random.seed(cfg.seed % 2**32)
            pair: ModelPair = exp.plugins["model"].instantiate().build(tuple(self.dataset.shape))
            critic = self.constraint.wrap_critic(pair.critic)
        self.noise_dim = pair.noise_dim
        self.generator = pair.generator.to(self.device)
        self.critic = critic.to(self.device)
        self.single_pass = pair.critic_batch_independent and self.constraint.allows_single_pass
        self.opt_g = (
            exp.plugins["optimizer.generator"].instantiate().build(self.generator.parameters())
        )
        self.opt_d = exp.plugins["optimizer.critic"].instantiate().build(self.critic.parameters())
        self.metrics: list[Metric] = [m.cls(exp.metric_settings.get(m.name)) for m in exp.metrics]
        # evaluation noise: fixed, from its own generator, so evaluations never move the
        # training RNG and every evaluation of a run sees the same z
        eval_rng = torch.Generator().manual_seed(cfg.seed + 1)
        self.eval_noise = torch.randn(cfg.eval_samples, self.noise_dim, generator=eval_rng)
        self.step = 0

    def critic_steps(self, step: int) -> int:
        """n_critic, or the WGAN warm-up count for the first 25 and every 500th generator
        step (Arjovsky et al. 2017, main.py) when ``train.n_critic_warmup`` > 0."""
        warm = self.cfg.n_critic_warmup
        if warm and (step < 25 or step % 500 == 0):
            return warm
        return self.cfg.n_critic

    # -- one generator step ---------------------------------------------------------
    def _score(self, real: Tensor, fake: Tensor) -> tuple[Tensor, Tensor]:
        if self.single_pass:
            scores = self.critic(torch.cat([real, fake]))
            return scores[: real.shape[0]], scores[real.shape[0] :]
        return self.critic(real), self.critic(fake)

    def _sample_real(self) -> Tensor:
        real = self.dataset.sample(self.cfg.batch_size, self.data_rng)
        return real.to(self.device, non_blocking=True)

    def _noise(self) -> Tensor:
        return torch.randn(
            self.cfg.batch_size, self.noise_dim, device=self.device, generator=self.train_rng
        )

    def train_step(self, measure: bool) -> tuple[list[Tensor], dict[str, Tensor]]:
        """One generator step with its critic steps; returns detached values (no sync)."""
        G, D, loss, constraint = self.generator, self.critic, self.loss, self.constraint
        zero = torch.zeros((), device=self.device)
        d_loss = penalty = zero
        for p in D.parameters():
            p.requires_grad_(True)
        for _ in range(self.critic_steps(self.step)):
            real = self._sample_real()
            with torch.no_grad():
                fake = G(self._noise())
            real_scores, fake_scores = self._score(real, fake)
            d_loss = loss.critic_loss(real_scores, fake_scores)
            pen = constraint.penalty(D, real, fake)
            total = d_loss if pen is None else d_loss + pen
            self.opt_d.zero_grad(set_to_none=True)
            total.backward()
            self.opt_d.step()
            constraint.after_critic_step(D)
            penalty = zero if pen is None else pen
        extra: dict[str, Tensor] = {}
        if measure:
            extra["grad_norm/critic"] = _grad_norm(D)
        # generator step: the critic's weights need no gradients here
        for p in D.parameters():
            p.requires_grad_(False)
        fake = G(self._noise())
        if loss.needs_real_scores:
            real_scores, fake_scores = self._score(self._sample_real(), fake)
        else:
            real_scores, fake_scores = None, D(fake)
        g_loss = loss.generator_loss(fake_scores, real_scores)
        self.opt_g.zero_grad(set_to_none=True)
        g_loss.backward()
        self.opt_g.step()
        if measure:
            extra["grad_norm/generator"] = _grad_norm(G)
            extra.update(constraint.diagnostics(D))
        w_est = -d_loss.detach() if loss.estimates_wasserstein else zero
        self.step += 1
        return [d_loss.detach(), g_loss.detach(), penalty.detach(), w_est], extra

    # -- evaluation -------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, noise: Tensor | None = None, chunk: int = 4096) -> Tensor:
        noise = self.eval_noise if noise is None else noise
        was_training = self.generator.training
        self.generator.eval()
        try:
            parts = [
                self.generator(noise[i : i + chunk].to(self.device)).float().cpu()
                for i in range(0, noise.shape[0], chunk)
            ]
        finally:
            self.generator.train(was_training)
        return torch.cat(parts)

    def evaluate(self) -> tuple[dict[str, float], Tensor]:
        samples = self.sample()
        if not torch.isfinite(samples).all():
            raise NonFiniteLossError(f"generator produced non-finite samples at step {self.step}")
        values = {m.name: float(m.compute(samples, self.dataset)) for m in self.metrics}
        if self.write_artifacts:
            self._plot_samples(samples, self.workdir / "samples" / sample_name(self.step, ".png"))
        return values, samples

    def _plot_samples(self, samples: Tensor, path: Path) -> None:
        shown = figure_samples(self.dataset, samples)
        if shown is None:
            return
        if self.trial:  # drawn later, for the best trial (trial_record.complete_trial_run)
            self._keep_samples(shown, path.with_suffix(".npy"))
            return
        if self.dataset.is_image:
            self.grid_frames.append((self.step, shown))
        plot, args, kwargs = sample_figure(
            self.dataset, shown, path, sample_title(self.exp.name, self.step)
        )
        self._draw(plot, *args, **kwargs)

    def _keep_samples(self, shown: np.ndarray, path: Path) -> None:
        """A trial's evaluation samples, logged as they come (a pruned trial has them too)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, shown, allow_pickle=False)
        if self.tracker:
            self.tracker.submit(self.tracker.log_artifact, path, "samples")

    def _draw(self, plot: Callable[..., Path], *args: Any, **kwargs: Any) -> None:
        """Draw a sample plot and log it; on the tracker's background thread when tracked."""

        def job() -> None:
            path = plot(*args, **kwargs)
            if self.tracker:
                self.tracker.log_artifact(path, "samples")

        if self.tracker:
            self.tracker.submit(job)
        else:
            job()

    # -- the loop ---------------------------------------------------------------------
    def run(self) -> TrainResult:
        cfg = self.cfg
        start = time.perf_counter()
        buffer: list[list[Tensor]] = []
        buffer_steps: list[int] = []
        extras: list[tuple[int, dict[str, Tensor]]] = []
        final_metrics: dict[str, float] = {}
        samples: Tensor | None = None
        checkpoints = RunCheckpoints(self.workdir, self.tracker)
        if self.write_artifacts:
            self._log_start()
        with (
            _progress(cfg.steps, self.progress, self.exp.name, initial=self.step) as bar,
            self._metrics_sent_at_exit(),
        ):
            while self.step < cfg.steps:
                if self.stop.requested:
                    self._stop_here(checkpoints, buffer, buffer_steps, extras, bar)
                measure = (self.step + 1) % cfg.log_every == 0 or self.step + 1 == cfg.steps
                values, extra = self.train_step(measure)
                buffer.append(values)
                buffer_steps.append(self.step)
                if extra:
                    extras.append((self.step, extra))
                if measure:
                    self._flush(buffer, buffer_steps, extras, bar)
                    buffer, buffer_steps, extras = [], [], []
                if self.step % cfg.eval_every == 0 or self.step == cfg.steps:
                    final_metrics, samples = self.evaluate()
                    self.evaluations.append((self.step, final_metrics))
                    if self.tracker:
                        # a train run sends them now; a trial with its next batch
                        self._unsent.extend((k, v, self.step) for k, v in final_metrics.items())
                        self._send_metrics(force=not self.trial)
                    if bar is not None:
                        bar.write(
                            f"step {self.step}: "
                            + ", ".join(f"{k}={v:.4g}" for k, v in final_metrics.items())
                        )
                    if self.on_eval:
                        self.on_eval(self.step, final_metrics)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    # the last step's checkpoint is the final one, written by _log_end
                    # (untracked and without artifacts, nobody could read it)
                    last = self.step == cfg.steps
                    if (self.tracker or self.write_artifacts) and not (
                        self.write_artifacts and last
                    ):
                        checkpoints.save(self.checkpoint_state())
        wall = time.perf_counter() - start
        assert samples is not None
        if self.write_artifacts:
            self._log_end(samples, wall)
        return TrainResult(
            run_id=self.tracker.run_id if self.tracker else None,
            metrics=final_metrics,
            steps=self.step,
            wall_time_s=wall,
            evaluations=self.evaluations,
            history=self.history,
        )

    def _stop_here(self, checkpoints: RunCheckpoints, buffer, buffer_steps, extras, bar) -> None:
        """A stop was asked for: log the steps done so far and the checkpoint of this step
        boundary (what ``--resume runs:/<id>`` continues from), then raise."""
        assert self.stop.signum is not None
        if buffer:
            self._flush(buffer, buffer_steps, extras, bar)
        self._send_metrics(force=True)
        note = "; its checkpoint logged" if self.tracker else ""
        if self.tracker or self.write_artifacts:
            try:
                checkpoints.save_and_log(self.checkpoint_state())
            except Exception as exc:  # the run still ends KILLED, saying what was lost
                note = f"; the checkpoint could not be logged: {type(exc).__name__}: {exc}"
        run_id = self.tracker.run_id if self.tracker else None
        raise TrainingInterrupted(self.stop.signum, self.step, run_id, note)

    def _flush(self, buffer, buffer_steps, extras, bar) -> None:
        """Move buffered values to the host at once, check them, log them in one batch."""
        table = torch.stack([torch.stack(v) for v in buffer]).cpu().numpy()
        extra_rows = [(s, {k: float(v) for k, v in d.items()}) for s, d in extras]
        finite = np.isfinite(table)
        if not finite.all():
            row, col = np.argwhere(~finite)[0]
            raise NonFiniteLossError(
                f"{STEP_KEYS[col]} became {table[row, col]} at generator step "
                f"{buffer_steps[row]}; stopping instead of training on garbage "
                f"(lower the learning rate or check the constraint settings)"
            )
        rows: list[tuple[str, float, int]] = []
        active = [i for i, key in enumerate(STEP_KEYS) if self._logs(key)]
        for r, step in enumerate(buffer_steps):
            for c in active:
                rows.append((STEP_KEYS[c], float(table[r, c]), step))
        extra_log: list[tuple[str, float, int]] = []
        for step, d in extra_rows:
            for k, v in d.items():
                if not math.isfinite(v):
                    raise NonFiniteLossError(f"{k} became {v} at generator step {step}")
                extra_log.append((k, v, step))
        for key, value, step in rows + extra_log:
            steps, values = self.history.setdefault(key, ([], []))
            steps.append(step)
            values.append(value)
        if self.tracker:
            if self.trial:  # the window's mean per key: MLflow's store costs per row
                rows = window_means([STEP_KEYS[c] for c in active], table[:, active], buffer_steps)
            self._unsent.extend(rows + extra_log)
            self.tracker.check()  # a server found gone in the background stops the run here
            self._send_metrics()
        if bar is not None:
            last = table[-1]
            post = {"D": f"{last[0]:.3f}", "G": f"{last[1]:.3f}"}
            if self.loss.estimates_wasserstein:
                post["W"] = f"{last[3]:.3f}"
            bar.set_postfix(post, refresh=False)
            bar.update(len(buffer_steps))

    @contextmanager
    def _metrics_sent_at_exit(self) -> Iterator[None]:
        """Whatever ends the loop (the last step, a non-finite loss, a pruned trial), the
        buffered per-step metrics reach the tracker."""
        try:
            yield
        finally:
            self._send_metrics(force=True)

    def _send_metrics(self, force: bool = False) -> None:
        """Hand buffered rows to the tracker at most every ``send_interval_s`` seconds: one
        MLflow ``log_batch`` costs ~7 ms on SQLite plus ~0.13 ms per row."""
        now = time.perf_counter()
        if not self.tracker or not self._unsent:
            return
        if force or now - self._last_send >= self.send_interval_s:
            rows, self._unsent = self._unsent, []
            self._last_send = now
            self.tracker.submit(self.tracker.log_metrics, rows)

    def _logs(self, key: str) -> bool:
        if key == "wasserstein_estimate":
            return self.loss.estimates_wasserstein
        if key == "penalty":
            return has_penalty(self.constraint)
        return True

    def checkpoint_state(self) -> dict[str, Any]:
        """Tensors and plain values only: loads with ``torch.load(weights_only=True)``."""
        return {
            "format": FORMAT,
            "step": self.step,
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "optimizer_generator": self.opt_g.state_dict(),
            "optimizer_critic": self.opt_d.state_dict(),
            "rng": rng_states(self.data_rng, self.train_rng),
            "config": self.exp.resolved,
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint: nets, optimizers, step and every RNG state.

        A checkpoint that does not fit (shapes, a malformed RNG state) is bad input, named
        as ``--resume``, not a failure of the model plugin whose ``load_state_dict`` said so.
        """
        try:
            self.generator.load_state_dict(state["generator"])
            self.critic.load_state_dict(state["critic"])
            self.opt_g.load_state_dict(state["optimizer_generator"])
            self.opt_d.load_state_dict(state["optimizer_critic"])
            self.step = int(state["step"])
            restore_rng_states(state["rng"], self.data_rng, self.train_rng)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                "--resume", f"the checkpoint does not fit this experiment: {first}"
            ) from exc

    def save_checkpoint(self, path: Path) -> Path:
        return save_checkpoint(path, self.checkpoint_state())

    def _log_start(self) -> None:
        config_path = self.workdir / "config.yaml"
        config_path.write_text(yaml.safe_dump(self.exp.resolved, sort_keys=False))
        if self.tracker:
            self.tracker.log_artifact(config_path)

    def _log_end(self, samples: Tensor, wall: float) -> None:
        """The run's last files. A trial writes its per-step values and evaluation samples
        instead of figures and the generator model (see :mod:`pipeline.trial_record`)."""
        wd = self.workdir
        if not self.dataset.is_image:
            np.save(wd / "samples.npy", samples.numpy())
        elif self.grid_frames:
            plots.animate_grids(
                [grid for _, grid in self.grid_frames],
                wd / "progression.gif",
                labels=[f"step {step}" for step, _ in self.grid_frames],
            )
        if self.trial:
            per_step = write_per_step_csv(wd, self.history)
        else:
            plots.loss_curves(
                {k: (np.asarray(s), np.asarray(v)) for k, (s, v) in self.history.items()},
                wd / "loss_curves.png",
                title=self.exp.name,
            )
        ckpt = self.save_checkpoint(wd / "checkpoint.pt")
        if not self.tracker:
            return
        t = self.tracker
        t.drain()  # every metric batch and sample plot is in before the run's last files
        t.log_metrics(
            [
                ("wall_time_s", wall, self.step),
                ("steps_per_s", self.step / max(wall, 1e-9), self.step),
            ]
        )
        if not self.dataset.is_image:
            t.log_artifact(wd / "samples.npy")
        elif (wd / "progression.gif").exists():
            t.log_artifact(wd / "progression.gif")
        if self.trial:
            t.log_artifact(per_step)
            t.log_artifact(ckpt, "checkpoint")
            return
        t.log_artifact(wd / "loss_curves.png")
        t.log_artifact(ckpt, "checkpoint")
        t.log_generator(self.generator.cpu(), self.noise_dim)
        self.generator.to(self.device)


def _grad_norm(module: nn.Module) -> Tensor:
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))


@contextmanager
def _progress(total: int, enabled: bool, name: str, initial: int = 0) -> Iterator[Any]:
    if not enabled:
        yield None
        return
    from tqdm import tqdm

    bar = tqdm(total=total, initial=initial, desc=name, unit="step", dynamic_ncols=True, leave=True)
    try:
        yield bar
    finally:
        bar.close()


def run_tags(exp: Experiment, device: torch.device) -> dict[str, str]:
    """Plugin names and the package + version each comes from, as MLflow tags."""
    import pipeline

    tags = {
        "pipeline.version": pipeline.__version__,
        "torch.version": torch.__version__,
        "device": str(device),
    }
    for section, choice in exp.plugins.items():
        tags[f"plugin.{section}"] = choice.info.name
        tags[f"plugin.{section}.package"] = choice.info.origin
    for m in exp.metrics:
        tags[f"plugin.metric.{m.name}.package"] = m.origin
    return tags


def run_training(
    exp: Experiment,
    *,
    tracking: TrackingSettings | None,
    device: str | None = None,
    progress: bool = True,
    on_eval: EvalCallback | None = None,
    parent_run_id: str | None = None,
    extra_tags: dict[str, str] | None = None,
    extra_params: dict[str, Any] | None = None,
    run_name: str | None = None,
    status_for: Callable[[BaseException], str | None] | None = None,
    on_run_started: Callable[[str], None] | None = None,
    resume_state: dict[str, Any] | None = None,
    trial: bool = False,
) -> TrainResult:
    """Train one experiment as one MLflow run (or untracked with ``tracking=None``).

    ``trial=True`` records it as a tuning trial (:mod:`pipeline.trial_record`): per-step
    metrics as window means sent every 10 s, evaluation samples instead of figures, no
    generator model; :func:`pipeline.trial_record.complete_trial_run` adds those later.

    ``resume_state`` (a checkpoint checked with :func:`check_resumable`) continues a
    run from its step, nets, optimizers and RNG states, as a new MLflow run.

    The run ends FINISHED on success, FAILED on an exception or a non-finite loss (the
    reason as the ``failure_reason`` tag), KILLED on Ctrl-C or SIGTERM: in the main
    thread the first one stops the loop at the next step boundary, logs the checkpoint
    of that step and raises :class:`TrainingInterrupted`; a second one stops at once
    (``KeyboardInterrupt``). ``status_for``
    lets a caller map its own exceptions (a pruned trial) to a status.

    When the tracking server goes away, training stops at the next flush and
    :func:`pipeline.unsent.keep_unsent` keeps the checkpoint, samples, config and unsent
    metrics in ``<unsent_dir>/<run_id>/`` (the temp folder is deleted on exit) and raises
    :class:`TrackingUnavailable` naming that folder.
    """
    # an exception from plugin code becomes a PluginRuntimeError naming the plugin
    used = [choice.info for choice in exp.plugins.values()] + list(exp.metrics)
    with tempfile.TemporaryDirectory(prefix="gan-pipeline-") as tmp:
        with blame_plugins(used):
            trainer = Trainer(
                exp,
                device=device,
                workdir=Path(tmp),
                progress=progress,
                on_eval=on_eval,
                write_artifacts=tracking is not None,
                trial=trial,
            )
            if resume_state is not None:
                trainer.restore(resume_state)
        tracker = None
        if tracking is not None:
            experiment_name = tracking.experiment_name or exp.name
            tags = run_tags(exp, trainer.device) | (extra_tags or {})
            if trial:
                tags[RECORD_TAG] = "trial"
            tracker = RunTracker.start(
                tracking,
                experiment_name,
                run_name=run_name,
                tags=tags,
                parent_run_id=parent_run_id,
            )
            trainer.tracker = tracker
            if on_run_started:
                on_run_started(tracker.run_id)
        try:
            if tracker:
                tracker.log_params(exp.flat_params() | (extra_params or {}))
            with stop_on_signals(trainer.stop), blame_plugins(used):
                result = trainer.run()
            if tracker:
                tracker.finish("FINISHED")
        except KeyboardInterrupt as exc:
            # TrainingInterrupted: stopped at a step boundary, its checkpoint logged
            if tracker:
                reason = str(exc) if isinstance(exc, TrainingInterrupted) else None
                try:
                    tracker.finish("KILLED", reason or "interrupted (Ctrl-C or SIGTERM)")
                except TrackingUnavailable as lost:
                    assert tracking is not None
                    raise keep_unsent(trainer, tracker, lost, tracking, after=exc) from exc
            raise
        except TrackingUnavailable as lost:
            # the server went away: what the run made stays on local disk, named in the error
            assert tracker is not None and tracking is not None
            raise keep_unsent(trainer, tracker, lost, tracking) from lost
        except BaseException as exc:
            if tracker:
                status = status_for(exc) if status_for else None
                try:
                    if status:
                        tracker.finish(status)
                    else:
                        tracker.finish("FAILED", f"{type(exc).__name__}: {exc}")
                except TrackingUnavailable as lost:
                    assert tracking is not None
                    raise keep_unsent(trainer, tracker, lost, tracking, after=exc) from exc
            raise
        if trainer.stop.requested:
            # the signal came while the finished run logged its last files: the run is
            # complete, and the caller (a tune between trials) still hears the signal
            assert trainer.stop.signum is not None
            raise TrainingInterrupted(
                trainer.stop.signum, trainer.step, result.run_id, finished=True
            )
        return result


#: keys a resumed run may change: a longer budget, another device, its own bookkeeping
RESUMABLE_CHANGES = (
    "train.steps",
    "train.device",
    "train.eval_every",
    "train.log_every",
    "train.checkpoint_every",
)


def check_resumable(exp: Experiment, state: dict[str, Any]) -> None:
    """Refuse to resume a checkpoint under other hyperparameters (mimicry's rule): only
    the budget, device and logging cadence may change, and the step must lie ahead."""
    from pipeline.config import flatten

    old = flatten({k: v for k, v in state["config"].items() if k != "tune"})
    new = flatten({k: v for k, v in exp.resolved.items() if k != "tune"})
    changed = sorted(
        k for k in set(old) | set(new) if k not in RESUMABLE_CHANGES and old.get(k) != new.get(k)
    )
    if changed:
        shown = ", ".join(f"{k} ({old.get(k)!r} → {new.get(k)!r})" for k in changed[:4])
        raise ConfigError("--resume", f"the checkpoint was trained with other settings: {shown}")
    if int(state["step"]) >= exp.train.steps:
        raise ConfigError(
            "train.steps",
            f"the checkpoint is at step {state['step']}; ask for more steps to resume "
            f"(got {exp.train.steps})",
        )
