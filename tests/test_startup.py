"""Startup: `pipeline --help`, `pipeline plugins` and refusing a bad experiment file never
import torch, numpy, scikit-learn, SciPy, matplotlib, MLflow, Optuna or Pillow.

Those imports are what made the commands slow (torch alone takes about 2 s), so the
guard is structural, not a timing: each command runs through the real CLI in a fresh
interpreter, which then reports which of those modules it imported. Third-party
autoloading is off there (the built-ins still load through their entry points), so a
plugin installed in someone's environment cannot change what is measured: the guard is
about what this project ships. ``benchmarks/startup.py`` measures the times.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import pytest
import yaml

from tests.conftest import EXPERIMENTS

#: what a refusal or a listing never needs
HEAVY = (
    "torch",
    "numpy",
    "sklearn",
    "scipy",
    "matplotlib",
    "mlflow",
    "optuna",
    "PIL",
    "torchmetrics",
)

#: runs each argument list through the CLI in this interpreter and prints, per command, its
#: exit status, output and which HEAVY modules were imported by then
CHILD = """
import json, sys
from click.testing import CliRunner
from pipeline.cli.commands import main

heavy, commands = json.loads(sys.argv[1])
for args in commands:
    result = CliRunner().invoke(main, args)
    print(json.dumps({
        "args": args,
        "exit_code": result.exit_code,
        "output": result.output,
        "exception": repr(result.exception),
        "imported": [m for m in heavy if m in sys.modules],
    }))
"""


def run_cli(cwd, *commands: list[str]) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAN_PIPELINE_")}
    env["GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    done = subprocess.run(
        [sys.executable, "-c", CHILD, json.dumps([HEAVY, list(commands)])],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return [json.loads(line) for line in done.stdout.splitlines()]


def test_help_and_plugins_import_nothing_heavy(tmp_path):
    help_, plugins = run_cli(tmp_path, ["--help"], ["plugins", "--json"])
    assert help_["exit_code"] == 0 and "train" in help_["output"], help_
    assert help_["imported"] == []
    assert plugins["exit_code"] == 0, plugins
    listed = {(row["kind"], row["name"]) for row in json.loads(plugins["output"])}
    # every built-in kind was loaded and registered, not skipped
    assert {kind for kind, _ in listed} == {
        "loss",
        "constraint",
        "optimizer",
        "dataset",
        "model",
        "metric",
    }
    assert {("model", "mlp"), ("dataset", "digits"), ("metric", "classifier_fd")} <= listed
    assert plugins["imported"] == []


def test_refused_experiment_files_import_nothing_heavy(tmp_path):
    raw = yaml.safe_load((EXPERIMENTS / "wgan_gp_grid25.yaml").read_text())
    unknown = tmp_path / "unknown_key.yaml"
    unknown.write_text(yaml.safe_dump({**raw, "colour": "blue"}))
    base = str(EXPERIMENTS / "wgan_gp_digits.yaml")  # digits: scikit-learn's data
    cases = {
        "colour": ["train", str(unknown)],
        "does not exist": ["train", str(tmp_path / "missing.yaml")],
        "train.n_critic": ["train", base, "-o", "train.n_critic=0"],
        "constraint.weight": ["train", base, "-o", "constraint.weight=-1"],
        "model.bogus": ["train", base, "-o", "model.bogus=1"],
        "loss.name": ["train", base, "-o", "loss.name=no_such_loss"],
        "optimizer.critic.lr": ["train", base, "-o", "optimizer.critic.lr=0"],
        "metrics.w1.projections": ["train", base, "-o", "metrics=[{name: w1, projections: 0}]"],
        "--timeout": ["tune", base, "--timeout", "-1"],
        "train.batch_size": ["tune", base, "-o", "train.batch_size=0"],
    }
    results = run_cli(tmp_path, *cases.values())
    for (field, args), result in zip(cases.items(), results, strict=True):
        assert result["exit_code"] == 2, (args, result)
        assert result["output"].startswith("error: ") and field in result["output"], result
        assert result["imported"] == [], (args, result["imported"])


def test_a_valid_file_still_loads_its_data(tmp_path):
    """The counterpart: the checks above do not pass because nothing is ever loaded."""
    (result,) = run_cli(
        tmp_path, ["train", str(EXPERIMENTS / "wgan_gp_digits.yaml"), "--device", "cuda:99"]
    )
    assert result["exit_code"] == 2 and "cuda" in result["output"], result
    assert {"torch", "sklearn"} <= set(result["imported"])


@pytest.mark.parametrize(
    ("plugin", "classes"),
    [("mlp", ("MLPGenerator", "MLPCritic")), ("dcgan", ("DCGANGenerator", "DCGANCritic"))],
)
def test_nets_pickled_under_the_plugin_module_still_load(plugin, classes):
    """Generators logged to MLflow (pickled) before the nets moved to ``<plugin>_nets`` name
    the plugin module; it still resolves them."""
    import importlib

    module = importlib.import_module(f"pipeline_plugins.models.{plugin}")
    nets = importlib.import_module(f"pipeline_plugins.models.{plugin}_nets")
    cls = getattr(nets, classes[0])
    args = (2, (2,), 8, 1, False) if plugin == "mlp" else (4, 1, 8, 4)
    net = cls(*args)
    for name in classes:
        assert getattr(module, name) is getattr(nets, name)
    cls.__module__ = module.__name__  # pickle it as the old code did
    try:
        data = pickle.dumps(net)
    finally:
        cls.__module__ = nets.__name__
    assert module.__name__.encode() in data and nets.__name__.encode() not in data
    loaded = pickle.loads(data)
    assert type(loaded) is cls
    assert loaded.state_dict().keys() == net.state_dict().keys()
    with pytest.raises(AttributeError):
        module.NoSuchNet  # noqa: B018
