"""A plugin package written against the plugin contract before the package move (issue 20).

``tests/fixtures/contract-plugin`` imports only the face plugin authors rely on
(``pipeline.hookimpl``, ``pipeline.types``, ``pipeline.testing``): a loss and a
constraint whose penalty draws with ``torch.rand`` from the training's generator. It is
installed for real (``pip install --target``, no index, no dependencies, as
``test_plugins_extras.py`` installs the example package), its own kit tests run, and the
``pipeline`` command trains with both plugins in a subprocess. A change behind the face
that breaks such a package fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import EXPERIMENTS, ROOT, pip_install_target, tiny

FIXTURE = ROOT / "tests" / "fixtures" / "contract-plugin"


@pytest.fixture(scope="module")
def fixture_site(tmp_path_factory) -> Path:
    return pip_install_target(FIXTURE, tmp_path_factory.mktemp("contract-plugin"))


def environment(site: Path) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(site), PYTHONDONTWRITEBYTECODE="1")
    for name in ("GAN_PIPELINE_BLOCK", "GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)
    return env


def test_its_kit_tests_pass(fixture_site):
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(FIXTURE / "tests")],
        cwd=FIXTURE,
        env=environment(fixture_site),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert " passed" in out.stdout and "failed" not in out.stdout


@pytest.mark.slow
def test_the_pipeline_command_trains_with_it(fixture_site, tmp_path):
    script = Path(sys.executable).parent / "pipeline"
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "pipeline.cli"]
    args = [*command, "train", str(EXPERIMENTS / "gan_ring8.yaml"), "--no-progress"]
    args += ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db", "--experiment-name", "fixture"]
    overrides = tiny(
        "gan_ring8.yaml",
        "loss={name: fixture_hinge, margin: 0.5}",
        "constraint={name: fixture_gp0, weight: 1.0}",
        "model.g_width=16",
        "model.d_width=16",
    )
    for o in overrides:
        args += ["-o", o]
    env = dict(environment(fixture_site), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
    out = subprocess.run(
        args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "MLflow run " in out.stdout
