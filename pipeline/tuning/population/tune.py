"""``pipeline tune … --population K``: trials asked K at a time, trained as one model.

Ask-and-tell (``study.ask`` / ``study.tell``): K trials are asked and trained together
in a :class:`~pipeline.tuning.population.trainer.PopulationTrainer`; each is reported at every
evaluation and pruned on its own (``trial.should_prune``), recorded in its own MLflow
child run (:mod:`pipeline.tuning.population.record`), told to the study when it ends, and its
slot takes the next trial, so the population stays full while the budget lasts.

Sampled values that change the structure (a width, a plugin choice) cannot share one
stack: trials are grouped by structure (:func:`~pipeline.tuning.population.forms.structure_key`).
The population trains one group at a time; a trial of another structure waits in its
group's queue, and when the population has emptied, the largest waiting group starts. A
trial whose plugins have no population form trains one at a time (the plain objective).
Each choice is printed.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any

from pipeline.errors import ConfigError, NonFiniteLossError
from pipeline.experiment.config import validate
from pipeline.host.blame import PluginRuntimeError
from pipeline.tracking.client import ROLE_TAG
from pipeline.tracking.urls import mask_url
from pipeline.training.device import resolve_device
from pipeline.training.trainer import TrainResult
from pipeline.tuning.population.forms import check_population_forms, structure_key
from pipeline.tuning.population.loop import MemberHooks, MemberStopped, PopulationLoop
from pipeline.tuning.population.record import MemberRun
from pipeline.tuning.population.trainer import Member, PopulationTrainer
from pipeline.tuning.report import summary
from pipeline.tuning.tuner import Tuner

__all__ = ["PopulationTuner"]

#: said when a population starts on CPU (benchmarks/results/population.json, issue 22)
CPU_NOTE = (
    "note: on CPU a population pays only when its members step alike: --population 8 on "
    "3x128 nets ran at 2.0x the trials/hour of one trial at a time with n_critic fixed, "
    "0.67-0.94x with n_critic searched over 1-10, where 2 worker processes ran at 1.06x "
    "(benchmarks/population.py, 2 cores, 2 threads); without --population, pipeline tune "
    "starts one 1-thread worker per core. On a GPU populations pay (docs/tuning.md)"
)


def expected_critic_work(values: list[int], size: int) -> float:
    """The critic steps a population of ``size`` members, each with an n_critic drawn
    uniformly from ``values``, takes for every member (max over the members, masked extra
    steps included) over those the same members take side by side (mean): E[max] / E[mean].
    E[max of K draws] = Σ_v v·(F(v)^K − F(v⁻)^K), F the draws' distribution function."""
    ordered = sorted(values)
    n = len(ordered)
    e_max = sum(v * (((i + 1) / n) ** size - (i / n) ** size) for i, v in enumerate(ordered))
    return e_max / (sum(ordered) / n)


def n_critic_note(params: dict[str, Any], size: int) -> str | None:
    """What a searched ``train.n_critic`` costs a population (None when it is not searched
    or the population has one member)."""
    p = params.get("train.n_critic")
    if p is None or size < 2:
        return None
    if p.type == "int":
        values = list(range(int(p.low), int(p.high) + 1, int(p.step or 1)))
    else:
        values = [int(v) for v in p.bounds()]
    if len(set(values)) < 2:
        return None
    work = expected_critic_work(values, size)
    return (
        f"note: train.n_critic is searched ({min(values)}-{max(values)}): a population "
        f"steps every member's critic as often as its largest n_critic (members with fewer "
        f"are masked out of the extra steps, their arithmetic done all the same), about "
        f"{work:.2f}x the critic work of the same trials side by side with {size} members "
        "(docs/speed.md#populations); fix n_critic, or search it without --population"
    )


class PopulationTuner(MemberHooks):
    """Runs a :class:`~pipeline.tuning.tuner.Tuner`'s study with populations of ``size`` trials."""

    def __init__(self, tuner: Tuner, size: int) -> None:
        if size < 1:
            raise ConfigError("--population", f"must be ≥ 1 (got {size})")
        if tuner.options.n_jobs > 1:
            raise ConfigError("--population", "trains in one process; leave --n-jobs at 1")
        if tuner.space.spec.seeds > 1:
            raise ConfigError(
                "tune.seeds",
                "seeds per trial has no --population form yet; run without --population",
            )
        self.tuner = tuner
        self.size = size
        self.asked = 0
        self.deadline: float | None = None
        #: trials waiting for a population of their structure: key → [(trial, values, exp)]
        self.waiting: OrderedDict[str, list[tuple[Any, dict[str, Any], Any]]] = OrderedDict()
        self.trainer: PopulationTrainer | None = None
        self.slots: dict[int, tuple[Any, MemberRun, dict[str, Any]]] = {}
        self.study = None

    # -- asking ---------------------------------------------------------------------------
    def _budget_left(self) -> bool:
        n = self.tuner.options.n_trials
        if n is not None and self.asked >= n:
            return False
        return self.deadline is None or time.perf_counter() < self.deadline

    def _ask(self) -> tuple[Any, dict[str, Any], Any] | None:
        """The next trial of the budget with its values and experiment; a trial that has no
        population form runs one at a time here and the next one is asked."""
        from pipeline.stores import dead_trials

        tuner = self.tuner
        while self._budget_left():
            trial = self.study.ask()
            self.asked += 1
            dead_trials.mark_worker(trial)
            values = tuner.space.suggest(trial)
            exp = validate(tuner.space.apply(values), tuner.registry)
            try:
                check_population_forms(exp)
            except ConfigError as exc:
                tuner.echo(f"trial {trial.number}: one at a time ({exc})")
                self._one_at_a_time(trial)
                continue
            return trial, values, exp
        return None

    def _one_at_a_time(self, trial) -> None:
        import optuna

        try:
            frozen = self.study.tell(trial, self.tuner.objective(trial))
        except optuna.TrialPruned:
            frozen = self.study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        except (NonFiniteLossError, PluginRuntimeError):
            frozen = self.study.tell(trial, state=optuna.trial.TrialState.FAIL)
        self.tuner.after_trial(self.study, frozen)

    def _next_for(self, key: str) -> tuple[Any, dict[str, Any], Any] | None:
        """A trial for a free slot of structure ``key``: a waiting one, or newly asked ones
        until one fits (the others wait for their own population)."""
        queue = self.waiting.get(key)
        if queue:
            return queue.pop(0)
        # a slot stays free while another structure has a full population waiting
        if any(len(q) >= self.size for k, q in self.waiting.items() if k != key):
            return None
        while (item := self._ask()) is not None:
            other = structure_key(item[2])
            if other == key:
                return item
            self.waiting.setdefault(other, []).append(item)
            self.tuner.echo(f"trial {item[0].number}: waits for a population of its structure")
            if len(self.waiting[other]) >= self.size:
                return None
        return None

    # -- a population -------------------------------------------------------------------------
    def _start_population(self, first: list[tuple[Any, dict[str, Any], Any]]) -> None:
        exps = [exp for _, _, exp in first]
        self.trainer = PopulationTrainer(exps, device=self.tuner.base_experiment.train.device)
        shared = [k for k in first[0][1] if _structural(k, first[0][2])]
        what = ", ".join(f"{k}={first[0][1][k]}" for k in shared) or "one structure"
        self.tuner.echo(
            f"population of {len(first)} (of {self.size}) trials: "
            f"{', '.join(str(t.number) for t, _, _ in first)} ({what})"
        )
        for k, item in enumerate(first):
            self._open(k, item, self.trainer.members[k])

    def _open(self, k: int, item, member: Member) -> None:
        trial, values, _ = item
        tuner = self.tuner
        run = MemberRun.start(
            tuner.tracking,
            tuner.experiment_name,
            member,
            device=self.trainer.device,
            run_name=tuner.trial_run_name(trial.number),
            parent_run_id=tuner.parent.run_id if tuner.parent else None,
            tags={
                ROLE_TAG: "trial",
                "optuna.study_name": tuner.study_name,
                "optuna.trial_number": str(trial.number),
                "optuna.params": json.dumps(values),
                "population.size": str(self.size),
            },
            params={f"trial.{k}": v for k, v in values.items()} | {"trial.number": trial.number},
        )
        if run.tracker is not None:
            trial.set_user_attr("mlflow_run_id", run.tracker.run_id)
        self.slots[k] = (trial, run, values)

    # -- hooks of the loop ----------------------------------------------------------------------
    def on_window(self, k, member, keys, table, steps) -> None:
        self.slots[k][1].window(keys, table, steps)

    def on_extras(self, k, member, step, values) -> None:
        self.slots[k][1].extras(step, values)

    def on_eval(self, k, member, metrics, samples) -> None:
        import math

        trial, run, _ = self.slots[k]
        run.evaluation(member, metrics, samples)
        metric = self.tuner.space.metric
        value = self.tuner.space.value(metrics)
        trial.set_user_attr("last_step", member.step)
        if math.isfinite(value):
            trial.report(value, member.step)
        if trial.should_prune():
            trial.set_user_attr("pruned_at_step", member.step)
            raise MemberStopped(f"pruned at step {member.step} ({metric}={value:.4g})")

    def on_end(self, k, member, result: TrainResult | None, error) -> None:
        import optuna

        trial, run, _ = self.slots.pop(k)
        assert self.trainer is not None
        state = optuna.trial.TrialState
        if error is None:
            assert result is not None
            trial.set_user_attr("wall_time_s", result.wall_time_s)
            run.finish(self.trainer, k, member, result, "FINISHED")
            frozen = self.study.tell(trial, self.tuner.space.value(result.metrics))
        elif isinstance(error, MemberStopped):
            run.finish(self.trainer, k, member, None, "KILLED")
            frozen = self.study.tell(trial, state=state.PRUNED)
        else:
            trial.set_user_attr("fail_reason", str(error))
            run.finish(self.trainer, k, member, None, "FAILED", f"{type(error).__name__}: {error}")
            frozen = self.study.tell(trial, state=state.FAIL)
        self.tuner.after_trial(self.study, frozen)
        item = self._next_for(self.trainer.key)
        if item is not None:
            self._open(k, item, self.trainer.set_member(k, item[2]))

    # -- the whole invocation ------------------------------------------------------------------
    def run(self):
        tuner = self.tuner
        self.study = study = tuner.open_study()  # joins the study: parent run, worker list
        tuner.echo(
            f"study {tuner.study_name!r} ({len(study.trials)} trials so far) "
            f"in {mask_url(tuner.storage_url)}; objective: {tuner.space.direction} "
            f"{tuner.space.metric}; sampler {tuner.options.sampler}, pruner "
            f"{tuner.options.pruner}; populations of {self.size} trials"
            + (f"; MLflow parent run {tuner.parent.run_id}" if tuner.parent else "")
        )
        if resolve_device(tuner.base_experiment.train.device).type == "cpu":
            tuner.echo(CPU_NOTE)
        note = n_critic_note(tuner.space.params, self.size)
        if note is not None:
            tuner.echo(note)
        from pipeline.stores import dead_trials

        dead_trials.fail_dead_trials(study, tuner.retry_dead)
        start = time.perf_counter()
        if tuner.options.timeout is not None:
            self.deadline = start + tuner.options.timeout
        status = "FINISHED"
        try:
            while True:
                first = self._first_members()
                if not first:
                    break
                self._start_population(first)
                assert self.trainer is not None
                try:
                    PopulationLoop(self.trainer, self).run()
                finally:
                    self.trainer.close()
        except BaseException as exc:
            status = "KILLED" if isinstance(exc, KeyboardInterrupt) else "FAILED"
            self._stop_all(f"the tune stopped: {type(exc).__name__}")
            raise
        finally:
            # the last worker to leave completes the best trial and ends the parent run
            tuner.leave_study(study, status, time.perf_counter() - start)
        tuner.echo(summary(study, tuner.space.metric, time.perf_counter() - start))
        return study

    def _stop_all(self, reason: str) -> None:
        """Ctrl-C or an error: running members' runs end KILLED, every trial this tune
        asked and did not finish (running or waiting) is FAIL, never left RUNNING."""
        import optuna

        fail = optuna.trial.TrialState.FAIL
        for k, (trial, run, _) in list(self.slots.items()):
            try:
                run.finish(self.trainer, k, None, None, "KILLED", reason)
            except Exception:  # a tracking server gone: the study still hears of it
                pass
            trial.set_user_attr("fail_reason", reason)
            self.study.tell(trial, state=fail)
        self.slots.clear()
        for queue in self.waiting.values():
            for trial, _, _ in queue:
                trial.set_user_attr("fail_reason", reason)
                self.study.tell(trial, state=fail)
        self.waiting.clear()

    def _first_members(self) -> list[tuple[Any, dict[str, Any], Any]]:
        """The members of the next population: the largest waiting group, or new trials."""
        if self.waiting:
            key = max(self.waiting, key=lambda k: len(self.waiting[k]))
            first = self.waiting.pop(key)[: self.size]
        else:
            item = self._ask()
            if item is None:
                return []
            key, first = structure_key(item[2]), [item]
        while len(first) < self.size and (item := self._next_for(key)) is not None:
            first.append(item)
        return first


def _structural(key: str, exp) -> bool:
    """Whether sampled ``key`` is part of the structure (shown when a population starts)."""
    from pipeline.tuning.population.forms import TRAIN_PER_MEMBER

    if key.startswith("train."):
        return key.split(".", 1)[1] not in TRAIN_PER_MEMBER
    return key.endswith(".name") or key.startswith("model.")
