"""The trainer: builds an experiment's plugins and runs the training loop. Its step is
:func:`pipeline.training.step.gan_step`, the one place that calls ``backward()`` and
``step()``, shared with the population's stacked nets.

n_critic critic steps per generator step; the constraint acts where it belongs (wraps
the critic at build time, adds a penalty to the critic loss, or acts after the critic
step). The hot loop keeps per-step values as device tensors and moves them to the host
once every ``train.log_every`` steps, so there is no ``.item()`` per step, no per-value
logging and no plugin lookup inside it. What it records goes through
:class:`pipeline.training.run_log.RunLog`; the MLflow run around it is
:func:`pipeline.training.run.run_training`'s.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from pipeline.errors import ConfigError, NonFiniteLossError
from pipeline.experiment.config import Experiment
from pipeline.tracking.client import RunTracker
from pipeline.training.checkpoint import (
    FORMAT,
    RunCheckpoints,
    restore_rng_states,
    rng_states,
    save_checkpoint,
)
from pipeline.training.constraints import build_constraint, has_penalty
from pipeline.training.device import resolve_device
from pipeline.training.generator_average import generator_average
from pipeline.training.interrupt import StopRequest, TrainingInterrupted
from pipeline.training.lr_schedule import base_rates, lr_factor, set_rates
from pipeline.training.run_log import RunEnd, RunLog, progress_bar
from pipeline.training.step import SingleNets, gan_step
from pipeline.training.step_values import STEP_KEYS, check_finite
from pipeline.types import Constraint, Dataset, Loss, Metric, ModelPair

#: held while a training seeds torch's global RNG and initialises its nets from it
_GLOBAL_RNG = threading.Lock()

#: called after each evaluation with (generator step, metrics); may raise to stop
EvalCallback = Callable[[int, dict[str, float]], None]

#: turns an evaluation's metrics into what the run records and reports (seeds per trial:
#: the mean over the trial's seeds, each seed's values and their standard error)
CombineEval = Callable[[int, dict[str, float]], dict[str, float]]


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
        combine_eval: CombineEval | None = None,
    ) -> None:
        self.exp = experiment
        #: draw plots and write samples, curves and the final checkpoint into ``workdir``
        #: (an untracked run in a temporary folder has no reader for them)
        self.write_artifacts = write_artifacts
        self.cfg = experiment.train
        self.device = resolve_device(device or self.cfg.device)
        self.workdir = workdir
        #: records per-step values, evaluations and the run's files (``trial``: as a
        #: tuning trial, see :mod:`pipeline.training.trial_record`)
        self.run_log = RunLog(experiment, workdir, trial=trial)
        self.run_log.tracker = tracker
        #: per-step values by metric name: (steps, values)
        self.history = self.run_log.history
        self.progress = progress
        self.on_eval = on_eval
        self.combine_eval = combine_eval
        self.evaluations: list[tuple[int, dict[str, float]]] = []
        #: set by a signal (see :func:`pipeline.training.interrupt.stop_on_signals`); read
        #: between steps
        self.stop = StopRequest()
        self._build()

    @property
    def tracker(self) -> RunTracker | None:
        """The MLflow run this training logs to; ``run_training`` sets it once started."""
        return self.run_log.tracker

    @tracker.setter
    def tracker(self, tracker: RunTracker | None) -> None:
        self.run_log.tracker = tracker

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
        #: each optimizer's param-group rates as built: ``train.lr_decay`` scales these
        self.base_lrs = base_rates((self.opt_g, self.opt_d))
        #: the generator's moving average (``train.g_ema``), torch's own AveragedModel
        self.ema = generator_average(self.generator, cfg.g_ema)
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

    def lr_factor(self, step: int) -> float:
        """``train.lr_decay``'s factor at generator step ``step``
        (:func:`pipeline.training.lr_schedule.lr_factor`)."""
        return lr_factor(self.cfg, step)

    # -- one generator step ---------------------------------------------------------
    def real_batch(self) -> Tensor:
        """The next real batch, on the host, from this training's data generator."""
        return self.dataset.sample(self.cfg.batch_size, self.data_rng)

    def noise_batch(self) -> Tensor:
        """The next noise batch, on the device, from this training's own generator."""
        return torch.randn(
            self.cfg.batch_size, self.noise_dim, device=self.device, generator=self.train_rng
        )

    def _sample_real(self) -> Tensor:
        return self.real_batch().to(self.device, non_blocking=True)

    def train_step(self, measure: bool) -> tuple[list[Tensor], dict[str, Tensor]]:
        """One generator step with its critic steps (:func:`pipeline.training.step.gan_step`);
        returns detached values (no sync)."""
        if self.cfg.lr_decay != "none":
            set_rates((self.opt_g, self.opt_d), self.base_lrs, self.lr_factor(self.step))
        nets = SingleNets(
            generator=self.generator,
            critic=self.critic,
            loss=self.loss,
            constraint=self.constraint,
            opt_g=self.opt_g,
            opt_d=self.opt_d,
            ema=self.ema,
            single_pass=self.single_pass,
            device=self.device,
            rounds=self.critic_steps(self.step),
            draw_real=self._sample_real,
            draw_noise=self.noise_batch,
        )
        values = gan_step(nets, measure)
        self.step += 1
        return values.row(), values.extra

    # -- evaluation -------------------------------------------------------------------
    @property
    def sampling_generator(self) -> nn.Module:
        """What is evaluated, sampled and logged: the generator, or its average."""
        return self.generator if self.ema is None else self.ema.module

    @torch.no_grad()
    def sample(self, noise: Tensor | None = None, chunk: int = 4096) -> Tensor:
        noise = self.eval_noise if noise is None else noise
        G = self.sampling_generator
        was_training = G.training
        G.eval()
        try:
            parts = [
                G(noise[i : i + chunk].to(self.device)).float().cpu()
                for i in range(0, noise.shape[0], chunk)
            ]
        finally:
            G.train(was_training)
        return torch.cat(parts)

    def evaluate(self) -> tuple[dict[str, float], Tensor]:
        samples = self.sample()
        if not torch.isfinite(samples).all():
            raise NonFiniteLossError(f"generator produced non-finite samples at step {self.step}")
        values = {m.name: float(m.compute(samples, self.dataset)) for m in self.metrics}
        if self.write_artifacts:
            self.run_log.samples(self.dataset, samples, self.step, values)
        return values, samples

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
            self.run_log.start()
        with (
            progress_bar(cfg.steps, self.progress, self.exp.name, initial=self.step) as bar,
            self.run_log.sent_at_exit(),
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
                    if self.combine_eval:
                        final_metrics = self.combine_eval(self.step, final_metrics)
                    self.evaluations.append((self.step, final_metrics))
                    self.run_log.evaluation(self.step, final_metrics)
                    if bar is not None:
                        bar.write(
                            f"step {self.step}: "
                            + ", ".join(f"{k}={v:.4g}" for k, v in final_metrics.items())
                        )
                    if self.on_eval:
                        self.on_eval(self.step, final_metrics)
                if cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0:
                    # the last step's checkpoint is the final one, written by RunLog.end
                    # (untracked and without artifacts, nobody could read it)
                    last = self.step == cfg.steps
                    if (self.tracker or self.write_artifacts) and not (
                        self.write_artifacts and last
                    ):
                        checkpoints.save(self.checkpoint_state())
        wall = time.perf_counter() - start
        assert samples is not None
        if self.write_artifacts:
            self.run_log.end(
                RunEnd(
                    step=self.step,
                    samples=samples,
                    wall_s=wall,
                    checkpoint=self.checkpoint_state(),
                    generator=self.sampling_generator,
                    noise_dim=self.noise_dim,
                    device=self.device,
                    is_image=self.dataset.is_image,
                )
            )
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
        self.run_log.send(force=True)
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
        check_finite(table, buffer_steps)
        extra_log: list[tuple[str, float, int]] = []
        for step, d in extra_rows:
            for k, v in d.items():
                if not math.isfinite(v):
                    raise NonFiniteLossError(f"{k} became {v} at generator step {step}")
                extra_log.append((k, v, step))
        active = [i for i, key in enumerate(STEP_KEYS) if self.logs(key)]
        keys = [STEP_KEYS[c] for c in active]
        self.run_log.steps(keys, table[:, active], buffer_steps, extra_log)
        if bar is not None:
            last = table[-1]
            post = {"D": f"{last[0]:.3f}", "G": f"{last[1]:.3f}"}
            if self.loss.estimates_wasserstein:
                post["W"] = f"{last[3]:.3f}"
            bar.set_postfix(post, refresh=False)
            bar.update(len(buffer_steps))

    def logs(self, key: str) -> bool:
        """Whether this training records the per-step value ``key`` (of ``STEP_KEYS``)."""
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
        } | ({} if self.ema is None else {"generator_ema": self.ema.state_dict()})

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
            if self.ema is not None:
                self.ema.load_state_dict(state["generator_ema"])
            self.step = int(state["step"])
            restore_rng_states(state["rng"], self.data_rng, self.train_rng)
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ConfigError(
                "--resume", f"the checkpoint does not fit this experiment: {first}"
            ) from exc

    def save_checkpoint(self, path: Path) -> Path:
        return save_checkpoint(path, self.checkpoint_state())
