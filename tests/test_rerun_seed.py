"""A rerun of ``pipeline tune --seed N`` on the same study continues the sampler's draws
instead of repeating the first run's (issue 23); worker seeds stay apart from rerun seeds."""

from __future__ import annotations

import optuna
import pytest
from click.testing import CliRunner

from pipeline.cli.commands import main
from pipeline.tuning.factories import RERUN_SEED_STRIDE, rerun_seed
from tests.conftest import EXPERIMENTS, TINY_SMALL

pytestmark = pytest.mark.usefixtures("one_thread")


def test_two_runs_with_the_same_seed_draw_four_distinct_settings(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["tune", str(EXPERIMENTS / "wgan_gp_grid25.yaml"), "--n-trials", "2", "--seed", "7"]
    args += ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    for o in TINY_SMALL:
        args += ["-o", o]
    for _ in range(2):
        result = CliRunner().invoke(main, args)
        assert result.exit_code == 0, result.output
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "optuna.journal"))
    )
    trials = optuna.load_study(study_name="wgan_gp_grid25", storage=storage).trials
    settings = [tuple(sorted(t.params.items())) for t in trials]
    assert len(settings) == 4 and len(set(settings)) == 4, settings  # before: 2-3 repeated 0-1


def test_rerun_and_worker_seeds_do_not_meet():
    assert rerun_seed(None, 5) is None
    assert rerun_seed(3, 0) == 3  # a new study: the seed as given (reproducible as before)
    assert rerun_seed(3, 2) == 3 + 2 * RERUN_SEED_STRIDE
    workers = 256  # --workers gives worker i the seed N + i, on a new study and on reruns
    first = {3 + i for i in range(workers)}
    reruns = {rerun_seed(3 + i, k) for i in range(workers) for k in range(1, 500)}
    assert not first & reruns
    assert len(reruns) == workers * 499  # no two (worker, trials so far) pairs share a seed
