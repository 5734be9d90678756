"""Names that become paths (experiment, study, comparison, variant) are checked before
anything is created, and every artifact folder made of a name stays inside its root."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from pipeline.cli.commands import main
from pipeline.errors import ConfigError
from pipeline.experiment.names import MAX_NAME_LENGTH, check_name, path_inside
from pipeline.tracking.client import TrackingSettings
from tests.conftest import EXPERIMENTS, TINY_SMALL

UNSAFE = {
    "dotdot": "../../escape",
    "absolute": "/tmp/gan-pipeline-escape-test",
    "nul": "a\x00b",
    "long": "x" * 300,
    "unicode": "expérience",
    "only-dots": "..",
    "slash": "a/b",
    "leading-dash": "-a",
}


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*")}


@pytest.fixture
def layout(tmp_path, monkeypatch):
    """``tmp_path/work/cwd`` as the current folder holding a real (already created) MLflow
    SQLite store; ``tmp_path`` is what must stay untouched outside it."""
    cwd = tmp_path / "work" / "cwd"
    cwd.mkdir(parents=True)
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    uri = f"sqlite:///{cwd}/mlflow.db"
    MlflowClient(tracking_uri=uri).search_experiments()  # creates the store
    return tmp_path, uri


def _one_error(result, field: str) -> None:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {field}: "), result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("name", list(UNSAFE.values()), ids=list(UNSAFE))
def test_unsafe_experiment_name_is_refused_before_anything_is_written(layout, name):
    root, uri = layout
    before = _files(root)
    args = ["train", str(EXPERIMENTS / "wgan_gp_grid25.yaml"), "--tracking-uri", uri]
    result = CliRunner().invoke(main, [*args, "-o", f"name={name}", "-o", "train.steps=2"])
    _one_error(result, "name")
    assert _files(root) == before  # no artifacts, no lock, nothing outside or inside
    assert not Path("/tmp/gan-pipeline-escape-test").exists()
    names = [e.name for e in MlflowClient(tracking_uri=uri).search_experiments()]
    assert names == ["Default"]


def test_unsafe_name_in_the_file_is_refused(layout):
    root, uri = layout
    text = (EXPERIMENTS / "wgan_gp_grid25.yaml").read_text()
    bad = root / "work" / "bad.yaml"
    bad.write_text(text + '\nname: "../../\\0escape"\n')
    before = _files(root)
    result = CliRunner().invoke(main, ["train", str(bad), "--tracking-uri", uri])
    _one_error(result, "name")
    assert _files(root) == before


@pytest.mark.parametrize("name", [UNSAFE["dotdot"], UNSAFE["long"], UNSAFE["unicode"]])
def test_unsafe_experiment_name_flag_and_mlflow_yaml_are_refused(layout, name):
    root, uri = layout
    base = ["train", str(EXPERIMENTS / "wgan_gp_grid25.yaml"), "--tracking-uri", uri]
    before = _files(root)
    _one_error(CliRunner().invoke(main, [*base, "--experiment-name", name]), "--experiment-name")
    Path("mlflow.yaml").write_text(yaml.safe_dump({"experiment_name": name}))
    _one_error(CliRunner().invoke(main, base), "mlflow.yaml:experiment_name")
    Path("mlflow.yaml").unlink()
    assert _files(root) == before


@pytest.mark.parametrize("name", [UNSAFE["dotdot"], UNSAFE["absolute"], UNSAFE["long"]])
def test_unsafe_study_name_is_refused_before_the_journal_exists(layout, name):
    root, uri = layout
    before = _files(root)
    args = ["tune", str(EXPERIMENTS / "wgan_gp_grid25.yaml"), "--tracking-uri", uri]
    args += ["--study-name", name, "--n-trials", "1"]
    for o in TINY_SMALL:
        args += ["-o", o]
    _one_error(CliRunner().invoke(main, args), "--study-name")
    assert _files(root) == before  # no optuna.journal, no lock file


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": ".."}, "name"),
        ({"name": "x" * 300}, "name"),
        ({"name": "ré"}, "name"),
        ({"variants": {"../../x": {"loss.name": "bce"}}}, "variants"),
    ],
)
def test_unsafe_comparison_and_variant_names_are_refused(tmp_path, monkeypatch, change, field):
    monkeypatch.chdir(tmp_path)
    data = {
        "name": "tiny",
        "base": str(EXPERIMENTS / "gan_ring8.yaml"),
        "variants": {"gan": {"loss.name": "bce"}},
        "budget": {"trials": 1},
    } | change
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    before = _files(tmp_path)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    result = CliRunner().invoke(main, ["compare", str(path), "--tracking-uri", uri])
    _one_error(result, field)
    assert _files(tmp_path) == before


def test_the_rule():
    ok = ["a", "wgan_gp_grid25", "A-1.2_b", "_x", "x" * MAX_NAME_LENGTH]
    assert [check_name("name", n) for n in ok] == ok
    for bad in [*UNSAFE.values(), "", "x" * (MAX_NAME_LENGTH + 1), "a b", "a\nb", None, 3]:
        with pytest.raises(ConfigError) as caught:
            check_name("name", bad)
        assert "\n" not in str(caught.value) and len(str(caught.value)) < 200


def test_artifact_folders_stay_inside_their_root(tmp_path):
    """The second guard: names checked on input never reach it, but the folder built from
    a name is resolved and must lie inside the artifact root (or the report folder)."""
    settings = TrackingSettings(
        tracking_uri=f"sqlite:///{tmp_path}/mlflow.db", artifact_location=str(tmp_path / "art")
    )
    assert settings.experiment_artifact_location("ok").endswith("/art/ok")
    for bad in ["../x", "..", "/etc", "a/../../x", "a\x00b"]:
        with pytest.raises(ConfigError, match=r"artifact_location: .* outside"):
            settings.experiment_artifact_location(bad)
        with pytest.raises(ConfigError, match="outside"):
            path_inside(tmp_path / "reports", bad)
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "link").symlink_to(tmp_path)
    with pytest.raises(ConfigError, match="outside"):
        path_inside(tmp_path / "reports", "link")  # a link out of the root counts as out
    assert path_inside(tmp_path / "reports", "ok") == (tmp_path / "reports" / "ok").resolve()
