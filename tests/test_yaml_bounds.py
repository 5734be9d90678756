"""YAML that would hang the process is refused before any work: alias bombs (in a file,
in an ``-o`` value, in ``mlflow.yaml``), files over the size limit, endless aliases."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from pipeline.cli.commands import main
from pipeline.errors import ConfigError
from pipeline.experiment.tree import (
    MAX_ALIAS_EXPANSION,
    MAX_YAML_BYTES,
    load_yaml,
    parse_override,
    safe_yaml,
)
from tests.conftest import EXPERIMENTS

#: nine levels of nine: 9**9 (387 million) "lol"s once expanded, 600 bytes as written
LAUGHS = "".join(
    f"l{i}: &l{i} [{', '.join([f'*l{i - 1}' if i else 'lol'] * 9)}]\n" for i in range(9)
)
BOMB = LAUGHS + "description: [*l8, *l8, *l8]\n"
OVERRIDE_BOMB = (
    "train.seed=[&a [x,x,x,x,x,x,x,x,x], &b [*a,*a,*a,*a,*a,*a,*a,*a,*a], "
    "&c [*b,*b,*b,*b,*b,*b,*b,*b,*b], &d [*c,*c,*c,*c,*c,*c,*c,*c,*c], "
    "&e [*d,*d,*d,*d,*d,*d,*d,*d,*d], &f [*e,*e,*e,*e,*e,*e,*e,*e,*e], "
    "&g [*f,*f,*f,*f,*f,*f,*f,*f,*f], &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]]"
)


def _refused(result, field: str, words: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1, result.output
    assert lines[0].startswith(field) and words in lines[0], result.output


def _experiment(tmp_path, extra: str):
    path = tmp_path / "bomb.yaml"
    path.write_text((EXPERIMENTS / "wgan_gp_grid25.yaml").read_text() + extra)
    return path


def test_billion_laughs_in_the_description_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _experiment(tmp_path, BOMB)
    result = CliRunner().invoke(main, ["train", str(path)])
    _refused(result, "error: experiment file", "(a YAML alias bomb?)")
    assert f"{MAX_ALIAS_EXPANSION:,}" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.yaml"]


def test_an_override_bomb_is_refused_naming_the_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        main, ["train", str(EXPERIMENTS / "wgan_gp_grid25.yaml"), "-o", OVERRIDE_BOMB]
    )
    _refused(result, "error: train.seed: the -o value", "(a YAML alias bomb?)")
    assert list(tmp_path.iterdir()) == []


def test_a_bomb_is_refused_in_a_real_process(tmp_path):
    """The command returns (the subprocess's timeout is only a guard against a hang)."""
    path = _experiment(tmp_path, BOMB)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "tune", str(path), "--n-trials", "1"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        f"error: experiment file {str(path)!r} has aliases (*name) that expand past "
        f"{MAX_ALIAS_EXPANSION:,} characters and nodes (a YAML alias bomb?)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.yaml"]


def test_an_oversize_file_is_refused_by_its_size(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = _experiment(tmp_path, "# padding\n" * (MAX_YAML_BYTES // 10 + 1))
    result = CliRunner().invoke(main, ["train", str(path)])
    _refused(result, "error: experiment file", f"is larger than {MAX_YAML_BYTES} bytes (1 MiB)")
    (tmp_path / "mlflow.yaml").write_text("# padding\n" * (MAX_YAML_BYTES // 10 + 1))
    result = CliRunner().invoke(main, ["train", str(EXPERIMENTS / "wgan_gp_grid25.yaml")])
    _refused(result, "error: mlflow config", "is larger than")


def test_bombs_in_mlflow_yaml_and_comparison_files_are_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.yaml").write_text(LAUGHS + "experiment_name: [*l8, *l8]\n")
    result = CliRunner().invoke(main, ["train", str(EXPERIMENTS / "wgan_gp_grid25.yaml")])
    _refused(result, "error: mlflow config", "(a YAML alias bomb?)")
    (tmp_path / "mlflow.yaml").unlink()
    (tmp_path / "c.yaml").write_text(LAUGHS + "name: c\ndescription: [*l8]\n")
    result = CliRunner().invoke(main, ["compare", str(tmp_path / "c.yaml")])
    _refused(result, "error: comparison file", "(a YAML alias bomb?)")


def test_what_the_bounds_let_through(tmp_path):
    # a merge of shared settings, aliases well under the bound, reads as before
    text = "d: &d {lr: 0.001, beta: 0.5}\ng: {<<: *d, name: adam}\nc: *d\n"
    assert safe_yaml(text, "x") == {
        "d": {"lr": 0.001, "beta": 0.5},
        "g": {"lr": 0.001, "beta": 0.5, "name": "adam"},
        "c": {"lr": 0.001, "beta": 0.5},
    }
    assert parse_override("train.seed=3") == ("train.seed", 3)
    assert parse_override("a.b=[1, {c: 2}]") == ("a.b", [1, {"c": 2}])
    assert parse_override("a.b=: not yaml [") == ("a.b", ": not yaml [")  # kept as text
    for text, words in [
        ("a: &a [*a]\n", "inside its own anchor"),
        ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
        (LAUGHS, "alias bomb"),
    ]:
        with pytest.raises(ConfigError, match=words):
            safe_yaml(text, "x")
    path = tmp_path / "exp.yaml"
    path.write_bytes(b"name: \xff\n")
    with pytest.raises(ConfigError, match="is not UTF-8"):
        load_yaml(path)
