"""A journal whose last line was torn is repaired (with a backup); a damaged line elsewhere
is one error naming the file and the line. Real tunes on a real journal and MLflow store."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli.commands import main
from pipeline.errors import ConfigError
from pipeline.stores.journal import TORN_SUFFIX, check_journal, torn_tail
from tests.conftest import EXPERIMENTS, TINY_SMALL

pytestmark = pytest.mark.usefixtures("one_thread")


def _tune(tmp_path: Path):
    args = ["tune", str(EXPERIMENTS / "wgan_gp_grid25.yaml"), "--n-trials", "1", "--seed", "0"]
    args += ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    for o in TINY_SMALL:
        args += ["-o", o]
    return CliRunner().invoke(main, args)


def _best(tmp_path: Path):
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    return CliRunner().invoke(main, ["best", "wgan_gp_grid25", "--tracking-uri", uri, "--json"])


def test_a_torn_last_line_is_cut_off_keeping_a_backup(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _tune(tmp_path).exit_code == 0
    journal = tmp_path / "optuna.journal"
    whole = journal.read_bytes()
    torn = whole[:-60]  # the recipe of issue 23: truncate -s -60 optuna.journal
    journal.write_bytes(torn)

    second = _tune(tmp_path)
    assert second.exit_code == 0, second.output
    notes = [line for line in second.output.splitlines() if "torn line" in line]
    assert len(notes) == 1 and notes[0].startswith(f"note: {str(journal)!r} ended in a torn")
    backups = list(tmp_path.glob(f"optuna.journal{TORN_SUFFIX}*"))
    assert len(backups) == 1 and backups[0].read_bytes() == torn  # the file as it was
    assert str(backups[0]) in notes[0]
    for line in journal.read_bytes().splitlines(keepends=True):  # every line whole again
        assert line.endswith(b"\n")
        json.loads(line)

    best = _best(tmp_path)  # before the fix: a raw JSONDecodeError from then on
    assert best.exit_code == 0, best.output
    report = json.loads(best.output[best.output.index("{") :])
    assert sum(report["trials"].values()) == 2  # both tunes' trials read back
    assert "torn line" not in best.output  # repaired once: nothing more to do


def test_a_damaged_line_is_named_by_its_number(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert _tune(tmp_path).exit_code == 0
    journal = tmp_path / "optuna.journal"
    lines = journal.read_bytes().splitlines(keepends=True)
    # a torn line an append then landed behind (what the old code left): line 3 of the file
    lines[2] = lines[2][:-30] + lines[3]
    damaged = b"".join(lines)
    journal.write_bytes(damaged)
    for result in (_best(tmp_path), _tune(tmp_path)):
        assert result.exit_code == 2, result.output
        (line,) = result.output.strip().splitlines()
        assert line.startswith(f"error: --storage: {str(journal)!r} line 3 is damaged (")
        assert line.endswith(
            "): Optuna cannot read the study past it; restore the file from a copy, or "
            "remove that line by hand"
        )
    assert journal.read_bytes() == damaged  # refused, not changed
    assert not list(tmp_path.glob(f"optuna.journal{TORN_SUFFIX}*"))


def test_check_journal_on_files(tmp_path):
    path = tmp_path / "j"
    path.write_bytes(b"")
    assert torn_tail(path) is None and check_journal(path, lambda m: ConfigError("x", m)) is None
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n')
    assert check_journal(path, lambda m: ConfigError("x", m)) is None
    notes: list[str] = []
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": ')
    backup = check_journal(path, lambda m: ConfigError("x", m), notes.append)
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    assert backup is not None and backup.read_bytes() == b'{"a": 1}\n{"b": 2}\n{"c": '
    assert len(notes) == 1 and "(6 bytes" in notes[0]
    path.write_bytes(b'{"only": "torn')  # no whole line at all: emptied
    check_journal(path, lambda m: ConfigError("x", m), notes.append)
    assert path.read_bytes() == b""
    path.write_bytes(b'{"a": 1}\n\xff\xfe\n')
    with pytest.raises(ConfigError, match="line 2 is damaged"):
        check_journal(path, lambda m: ConfigError("x", m))
