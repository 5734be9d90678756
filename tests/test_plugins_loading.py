"""What loads and what happens when a plugin breaks: blocking, the off switch, ``--plugin``,
and errors that name the plugin, its package and version, and how to block it.

Broken packages are real distributions: a ``*.dist-info`` folder with ``METADATA`` and
``entry_points.txt`` in a temporary folder put on ``sys.path``, which is all
``importlib.metadata`` needs to find an installed package.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from mlflow.tracking import MlflowClient

from pipeline.cli.commands import main
from pipeline.errors import PluginError
from pipeline.host.blame import PluginRuntimeError, plugin_failure
from pipeline.host.registry import (
    Registry,
    RegistryOptions,
    default_registry,
    reset_default_registry,
)
from pipeline.testing import registered
from tests.conftest import EXPERIMENTS, GAN_PIPELINE, ROOT, tiny, train_args

BOOM = """
import torch
from pipeline import hookimpl
from pipeline.types import Constraint


class Boom(Constraint):
    name = "boom"
    description = "raises at its third penalty"
    calls = 0

    def penalty(self, critic, real, fake):
        type(self).calls += 1
        if type(self).calls >= 3:
            raise RuntimeError("kaboom on purpose")
        return critic(real).pow(2).mean()


@hookimpl
def register_constraints(register):
    register(Boom)
"""


def make_dist(site: Path, dist: str, version: str, modules: dict[str, str]) -> None:
    """An installed distribution in ``site`` whose entry points are its modules."""
    info = site / f"{dist.replace('-', '_')}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {name}_mod\n" for name in modules)
    (info / "entry_points.txt").write_text(f"[gan_pipeline]\n{lines}")
    for name, source in modules.items():
        (site / f"{name}_mod.py").write_text(source)


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A folder on sys.path for this test only; the process-wide registry reloads around it."""
    for name in (
        "GAN_PIPELINE_BLOCK",
        "GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD",
        "GAN_PIPELINE_PLUGINS",
    ):
        monkeypatch.delenv(name, raising=False)
    path = tmp_path / "site"
    path.mkdir()
    monkeypatch.syspath_prepend(str(path))
    reset_default_registry()
    yield path
    reset_default_registry()
    for name in (
        *(f"{m}_mod" for m in ("broken", "my_bce", "half", "odd", "same", "typo")),
        "my_losses",
        "boom",
    ):
        sys.modules.pop(name, None)


def cli(*args: str, env: dict[str, str] | None = None):
    return CliRunner().invoke(main, list(args), env=env)


#: 32-wide MLPs: what these tests train
NARROW = ("model.g_width=32", "model.d_width=32")


def test_a_broken_package_is_named_and_blocking_it_lets_the_builtins_train(
    site, shared_store, monkeypatch, tmp_path
):
    make_dist(site, "broken-plugin", "1.2", {"broken": "from pipeline.types import NoSuchThing\n"})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.yaml").write_text(f"artifact_location: {shared_store.artifact_location}\n")

    # blocked, or autoload off: never imported, the built-ins work
    result = cli("--block", "broken", *train_args("gan_ring8.yaml", shared_store, *NARROW))
    assert result.exit_code == 0, result.output
    run_id = result.output.split("MLflow run ")[1].split()[0]
    assert MlflowClient(shared_store.tracking_uri).get_run(run_id).info.status == "FINISHED"
    result = cli("plugins", env={"GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert result.exit_code == 0 and "gradient_penalty" in result.stdout
    result = cli("plugins", env={"GAN_PIPELINE_BLOCK": "broken-plugin"})  # by package
    assert result.exit_code == 0
    assert "not loaded: broken (broken-plugin 1.2): blocked" in result.stderr
    assert "broken_mod" not in sys.modules

    # not blocked: one message naming it, its package and version, and how to block it
    for args in (["plugins"], train_args("gan_ring8.yaml", shared_store, *NARROW)):
        result = cli(*args)
        assert result.exit_code == 2
        assert result.output.count("error:") == 1
        assert "plugin 'broken' (broken-plugin 1.2) failed to import 'broken_mod'" in result.output
        assert "ImportError: cannot import name 'NoSuchThing'" in result.output
        assert "pipeline --block broken" in result.output
        assert "GAN_PIPELINE_BLOCK=broken" in result.output


HEAD = "from pipeline import hookimpl\nfrom pipeline.types import Loss\n"
CRITIC = "    def critic_loss(self, r, f): return f.mean() - r.mean()\n"
#: package, version, entry point (= module), its source, what the one error line says
REFUSED = {
    "a taken name": (
        "clashing-losses",
        "2.0",
        "my_bce",
        f"{HEAD}class MyBCE(Loss):\n    name = 'bce'\n{CRITIC}"
        "    def generator_loss(self, f, r): return -f.mean()\n"
        "@hookimpl\ndef register_losses(register):\n    register(MyBCE)\n",
        [
            "two plugins claim the loss name 'bce'",
            f"BCE from loss-bce ({GAN_PIPELINE})",
            "MyBCE from my_bce (clashing-losses 2.0)",
        ],
    ),
    "an incomplete loss": (
        "half-losses",
        "0.3",
        "half",
        f"{HEAD}class Half(Loss):\n    name = 'half'\n{CRITIC}"
        "@hookimpl\ndef register_losses(register):\n    register(Half)\n",
        ["plugin 'half' (half-losses 0.3) registered Half", "it does not implement generator_loss"],
    ),
    "a hook outside the contract": (
        "odd-args",
        "0.2",
        "odd",
        "from pipeline import hookimpl\n"
        "@hookimpl\ndef register_losses(register, extra):\n    pass\n",
        ["plugin 'odd' (odd-args 0.2) has a hook implementation that does not fit the contract"],
    ),
}


@pytest.mark.parametrize("case", REFUSED)
def test_a_package_whose_registration_is_refused_is_named(site, case):
    package, version, module, source, words = REFUSED[case]
    make_dist(site, package, version, {module: source})
    result = cli("plugins")
    assert result.exit_code == 2 and result.output.count("error:") == 1
    for phrase in words:
        assert phrase in result.output
    assert f"pipeline --block {module}" in result.output
    assert cli("--block", module, "plugins").exit_code == 0


def test_two_packages_with_one_entry_point_name_are_both_named(site):
    ok = "from pipeline import hookimpl\n"
    make_dist(site, "first-pkg", "1.0", {"same": ok})
    other = site / "second_pkg-3.1.dist-info"
    other.mkdir()
    (other / "METADATA").write_text("Metadata-Version: 2.1\nName: second-pkg\nVersion: 3.1\n")
    (other / "entry_points.txt").write_text("[gan_pipeline]\nsame = same_mod\n")
    result = cli("plugins")
    assert result.exit_code == 2
    assert "first-pkg 1.0" in result.output and "second-pkg 3.1" in result.output
    assert "'same'" in result.output


def test_unknown_hooks_are_reported_with_the_plugin(site):
    typo = "from pipeline import hookimpl\n@hookimpl\ndef register_loses(register):\n    pass\n"
    make_dist(site, "typo-pkg", "0.0.1", {"typo": typo})
    result = cli("plugins", "--json")
    assert result.exit_code == 0
    assert json.loads(result.stdout)  # stdout stays valid JSON
    assert (
        "warning: plugin 'typo' (typo-pkg 0.0.1) implements 'register_loses', which matches "
        "no hook of the contract (did you mean register_losses?)"
    ) in result.stderr
    result = cli("train", str(EXPERIMENTS / "gan_ring8.yaml"), "-o", "loss.name=nope")
    assert result.exit_code == 2 and "register_loses" in result.output


def docs_loss() -> str:
    text = (ROOT / "docs" / "writing-plugins.md").read_text()
    return re.search(r"```python\n(# my_losses\.py.*?)```", text, re.S).group(1)


def test_the_documented_loss_loads_with_plugin_and_trains(
    site, shared_store, monkeypatch, tmp_path
):
    source = docs_loss()
    assert len(source.splitlines()) < 30
    (site / "my_losses.py").write_text(source)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.yaml").write_text(f"artifact_location: {shared_store.artifact_location}\n")

    result = cli("--plugin", "my_losses", "plugins", "--json")
    assert result.exit_code == 0, result.output
    rows = {r["name"]: r for r in json.loads(result.stdout)}
    assert rows["margin_hinge"]["package"] == "local"
    assert rows["margin_hinge"]["hooks"] == ["register_losses"]
    assert "margin_hinge" not in cli("plugins").stdout  # only when asked for

    # by file path, through the environment, then trained and recorded
    file = tmp_path / "elsewhere" / "my_losses.py"
    file.parent.mkdir()
    file.write_text(source)
    result = cli(
        *train_args(
            "sngan_ring8.yaml", shared_store, *NARROW, "loss={name: margin_hinge, margin: 0.5}"
        ),
        env={"GAN_PIPELINE_PLUGINS": str(file)},
    )
    assert result.exit_code == 0, result.output
    run_id = result.output.split("MLflow run ")[1].split()[0]
    run = MlflowClient(shared_store.tracking_uri).get_run(run_id)
    assert run.data.tags["plugin.loss"] == "margin_hinge"
    assert run.data.tags["plugin.loss.package"] == "local"
    assert run.data.params["loss.margin"] == "0.5"


def test_plugin_option_naming_a_missing_module(site):
    result = cli("--plugin", "no_such_module_here", "plugins")
    assert result.exit_code == 2
    assert "plugin module 'no_such_module_here' (from --plugin or GAN_PIPELINE_PLUGINS)" in (
        result.output
    )
    assert "ModuleNotFoundError" in result.output


def test_plugin_code_raising_in_train_names_the_plugin(site, shared_store, monkeypatch, tmp_path):
    (site / "boom.py").write_text(BOOM)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.yaml").write_text(f"artifact_location: {shared_store.artifact_location}\n")
    result = cli(
        "--plugin",
        "boom",
        *train_args("gan_ring8.yaml", shared_store, *NARROW, "constraint.name=boom"),
    )
    assert result.exit_code == 1
    message = result.output.strip().splitlines()[-1]
    assert message.startswith(
        "error: constraint 'boom' (local) raised RuntimeError: kaboom on purpose"
    )
    assert f"{site / 'boom.py'}:" in message and "in penalty()" in message
    assert "pipeline --block boom" in message
    client = MlflowClient(shared_store.tracking_uri)
    exp = client.get_experiment_by_name("gan_ring8")
    (run,) = client.search_runs([exp.experiment_id], "tags.`plugin.constraint` = 'boom'")
    assert run.info.status == "FAILED"
    assert "constraint 'boom' (local) raised RuntimeError" in run.data.tags["failure_reason"]


def test_plugin_code_raising_in_a_tune_trial_fails_that_trial_only(
    site, shared_store, monkeypatch, tmp_path
):
    namespace: dict = {"__name__": "boom_plugin"}
    exec(compile(BOOM, "boom_plugin.py", "exec"), namespace)
    boom = namespace["Boom"]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mlflow.yaml").write_text(f"artifact_location: {shared_store.artifact_location}\n")
    spec = yaml.safe_load((EXPERIMENTS / "gan_ring8.yaml").read_text())
    spec["name"] = "boom_tune"
    spec["tune"] = {
        "objective": {"metric": "w1"},
        "params": {"constraint.name": {"type": "categorical", "choices": ["boom", "none"]}},
    }
    (tmp_path / "boom_tune.yaml").write_text(yaml.safe_dump(spec))
    args = ["tune", str(tmp_path / "boom_tune.yaml"), "--n-trials", "2", "--sampler", "grid"]
    args += ["--tracking-uri", shared_store.tracking_uri, "--storage", str(tmp_path / "j.log")]
    for o in tiny("", *NARROW, "train.batch_size=32"):
        args += ["-o", o]
    with registered(boom, registry=default_registry(), package="boom-pkg", version="9.9"):
        result = cli(*args)
    assert result.exit_code == 0, result.output
    named = "constraint 'boom' (boom-pkg 9.9) raised RuntimeError: kaboom on purpose"
    assert named in result.output  # under the FAIL trial's line
    assert "1 complete, 1 fail" in result.output
    client = MlflowClient(shared_store.tracking_uri)
    exp = client.get_experiment_by_name("boom_tune")
    children = {
        r.data.tags["plugin.constraint"]: r
        for r in client.search_runs([exp.experiment_id])
        if "mlflow.parentRunId" in r.data.tags
    }
    assert children["boom"].info.status == "FAILED"
    assert children["boom"].data.tags["optuna.state"] == "FAIL"
    assert named in children["boom"].data.tags["failure_reason"]
    assert children["boom"].data.tags["plugin.constraint.package"] == "boom-pkg 9.9"
    assert children["none"].info.status == "FINISHED"


def test_default_registry_is_loaded_once_per_options(site, monkeypatch):
    first = default_registry()
    assert default_registry() is first
    monkeypatch.setenv("GAN_PIPELINE_BLOCK", "loss-bce")
    assert default_registry() is first  # the environment is read when it loads
    blocked = default_registry(RegistryOptions.from_env())
    assert blocked is not first and not blocked.has("loss", "bce")
    assert default_registry() is blocked
    assert default_registry(RegistryOptions()) is not blocked


def test_options_from_the_environment_and_the_command_line():
    env = {
        "GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD": "yes",
        "GAN_PIPELINE_BLOCK": " a, b ,,",
        "GAN_PIPELINE_PLUGINS": "m1",
    }
    options = RegistryOptions.from_env(env, block=("c", "a"), plugins=("m2",))
    assert options == RegistryOptions(autoload=False, blocked=("a", "b", "c"), modules=("m1", "m2"))
    assert RegistryOptions.from_env({"GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD": "0"}).autoload
    assert not RegistryOptions.from_env({}, autoload=False).autoload
    assert RegistryOptions.from_env(
        {"GAN_PIPELINE_DISABLE_PLUGIN_AUTOLOAD": "1"}, autoload=True
    ).autoload


def test_blocking_a_builtin_and_blocked_names_that_match_nothing():
    registry = Registry(RegistryOptions(blocked=("loss-wgan", "no-such-plugin"))).load()
    assert not registry.has("loss", "wgan") and registry.has("loss", "bce")
    assert [s.name for s in registry.skipped] == ["loss-wgan"]
    assert registry.problems() == [
        "blocked name 'no-such-plugin' matches no installed plugin or package"
    ]
    with pytest.raises(PluginError, match="'loss-wgan' was not loaded: blocked"):
        registry.get("loss", "loss-wgan")


def test_a_failure_outside_plugin_code_is_not_blamed_on_a_plugin():
    registry = Registry(RegistryOptions(autoload=False)).load()
    info = registry.get("loss", "bce")
    try:
        raise ValueError("the host's own bug")
    except ValueError as exc:
        assert plugin_failure(exc, [info]) is None
    assert PluginRuntimeError.exit_code == 1
