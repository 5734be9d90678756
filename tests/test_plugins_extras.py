"""The example third-party package, installed for real with pip, seen everywhere.

``examples/gan-pipeline-extras`` is copied to a temporary folder and installed with
``pip install --target`` (no index, no dependencies: gan-pipeline is already here), so its
dist-info and entry points are real; the tests put that folder on ``sys.path`` (and on
``PYTHONPATH`` for subprocesses) for their length only, so the rest of the suite keeps
seeing the built-ins alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from pipeline.cli.commands import main
from pipeline.host.registry import reset_default_registry
from tests.conftest import EXPERIMENTS, GAN_PIPELINE, ROOT, pip_install_target, tiny

EXAMPLE = ROOT / "examples" / "gan-pipeline-extras"
EXTRAS_VERSION = tomllib.loads((EXAMPLE / "pyproject.toml").read_text())["project"]["version"]
EXTRAS = f"gan-pipeline-extras {EXTRAS_VERSION}"


@pytest.fixture(scope="module")
def extras_site(tmp_path_factory) -> Path:
    site = pip_install_target(EXAMPLE, tmp_path_factory.mktemp("extras"))
    assert (site / f"gan_pipeline_extras-{EXTRAS_VERSION}.dist-info" / "entry_points.txt").is_file()
    return site


@pytest.fixture
def extras(extras_site, monkeypatch):
    """The example package is importable and its entry points visible, for one test."""
    for name in ("GAN_PIPELINE_BLOCK", "GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.syspath_prepend(str(extras_site))
    reset_default_registry()
    yield extras_site
    reset_default_registry()


def plugin_rows(*global_options: str, env: dict[str, str] | None = None):
    result = CliRunner().invoke(main, [*global_options, "plugins", "--json"], env=env)
    assert result.exit_code == 0, result.output
    return {(r["kind"], r["name"]): r for r in json.loads(result.stdout)}, result.stderr


def test_discovered_through_its_entry_point(extras):
    rows, stderr = plugin_rows()
    assert stderr == ""
    r1, smooth = rows[("constraint", "r1")], rows[("loss", "bce_smooth")]
    assert (r1["package"], r1["version"], r1["module"]) == (
        "gan-pipeline-extras",
        EXTRAS_VERSION,
        "r1",
    )
    assert r1["hooks"] == ["register_constraints"]
    assert (smooth["package"], smooth["version"]) == ("gan-pipeline-extras", EXTRAS_VERSION)
    assert smooth["hooks"] == ["register_losses"]
    assert rows[("loss", "bce")]["package"] == "built-in"
    table = CliRunner().invoke(main, ["plugins"]).stdout
    line = next(x for x in table.splitlines() if x.startswith("constraint  r1 "))
    assert "gan-pipeline-extras" in line and "register_constraints" in line
    assert "Mescheder 2018" in line


def test_block_by_entry_point_or_package_and_the_off_switch(extras):
    rows, stderr = plugin_rows("--block", "r1")
    assert ("constraint", "r1") not in rows and ("loss", "bce_smooth") in rows
    assert f"not loaded: r1 ({EXTRAS}): blocked" in stderr
    rows, _ = plugin_rows(env={"GAN_PIPELINE_BLOCK": "gan-pipeline-extras"})
    assert ("constraint", "r1") not in rows and ("loss", "bce_smooth") not in rows
    rows, stderr = plugin_rows(env={"GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert ("constraint", "r1") not in rows and ("loss", "bce_smooth") not in rows
    assert ("constraint", "gradient_penalty") in rows and len(rows) >= 23
    assert "autoload off (GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD)" in stderr
    # autoload off, but the module asked for by name loads, from its own distribution
    rows, _ = plugin_rows("--no-autoload", "--plugin", "gan_pipeline_extras.r1")
    assert ("loss", "bce_smooth") not in rows
    assert rows[("constraint", "r1")]["package"] == "gan-pipeline-extras"
    # a blocked plugin asked for by an experiment: the error says why it is missing
    result = CliRunner().invoke(
        main,
        ["--block", "r1", "train", str(EXPERIMENTS / "gan_ring8.yaml"), "-o", "constraint.name=r1"],
    )
    assert result.exit_code == 2
    assert "unknown constraint 'r1'" in result.output
    assert "'r1' was not loaded: blocked" in result.output


def test_train_with_its_loss_and_constraint_is_recorded_in_mlflow(
    extras, shared_store, monkeypatch, tmp_path
):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.yaml").write_text(f"artifact_location: {shared_store.artifact_location}\n")
    args = ["train", str(EXPERIMENTS / "gan_ring8.yaml"), "--no-progress"]
    args += ["--tracking-uri", shared_store.tracking_uri, "--experiment-name", "extras_train"]
    overrides = tiny(
        "gan_ring8.yaml",
        "loss={name: bce_smooth}",
        "constraint={name: r1, gamma: 1.0}",
        "model.g_width=32",
        "model.d_width=32",
    )
    for o in overrides:
        args += ["-o", o]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    run_id = result.output.split("MLflow run ")[1].split()[0]
    client = MlflowClient(shared_store.tracking_uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    tags, params = run.data.tags, run.data.params
    assert tags["plugin.loss"] == "bce_smooth" and tags["plugin.loss.package"] == EXTRAS
    assert tags["plugin.constraint"] == "r1" and tags["plugin.constraint.package"] == EXTRAS
    assert tags["plugin.dataset.package"] == GAN_PIPELINE
    assert params["constraint.gamma"] == "1.0" and params["loss.real_target"] == "0.9"
    penalties = [m.value for m in client.get_metric_history(run_id, "penalty")]
    assert len(penalties) == 6 and all(p > 0 for p in penalties)


def test_tune_chooses_between_it_and_a_builtin(extras, shared_store, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.yaml").write_text(f"artifact_location: {shared_store.artifact_location}\n")
    spec = yaml.safe_load((EXPERIMENTS / "gan_ring8.yaml").read_text())
    spec["name"] = "extras_tune"
    spec["tune"] = {
        "objective": {"metric": "w1"},
        "params": {"constraint.name": {"type": "categorical", "choices": ["r1", "none"]}},
    }
    file = tmp_path / "extras_tune.yaml"
    file.write_text(yaml.safe_dump(spec))
    args = ["tune", str(file), "--n-trials", "2", "--sampler", "grid", "--pruner", "none"]
    args += ["--tracking-uri", shared_store.tracking_uri, "--storage", str(tmp_path / "j.log")]
    for o in tiny("", "model.g_width=32", "model.d_width=32", "train.batch_size=32"):
        args += ["-o", o]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert result.output.count("COMPLETE") == 2
    client = MlflowClient(shared_store.tracking_uri)
    exp = client.get_experiment_by_name("extras_tune")
    children = [
        r for r in client.search_runs([exp.experiment_id]) if r.data.tags.get("mlflow.parentRunId")
    ]
    packages = {r.data.tags["plugin.constraint"]: r for r in children}
    assert sorted(packages) == ["none", "r1"]
    assert packages["r1"].data.tags["plugin.constraint.package"] == EXTRAS
    assert packages["r1"].data.params["trial.constraint.name"] == "r1"
    assert packages["none"].data.tags["plugin.constraint.package"] == GAN_PIPELINE
    assert "penalty" in packages["r1"].data.metrics
    assert all(r.info.status == "FINISHED" for r in children)


def test_the_example_package_own_tests_pass(extras_site, tmp_path):
    """Its tests use the kit (pipeline.testing) and its entry points, as an author's would."""
    env = dict(os.environ, PYTHONPATH=str(extras_site), PYTHONDONTWRITEBYTECODE="1")
    env.pop("GAN_PIPELINE_BLOCK", None)
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(EXAMPLE / "tests")],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert " passed" in out.stdout and "failed" not in out.stdout
