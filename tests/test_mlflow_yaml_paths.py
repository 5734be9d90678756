"""Relative paths in ``mlflow.yaml`` are the file's: taken from the folder holding it, so
``--mlflow-config other/mlflow.yaml`` (or a command run elsewhere with it) means
``other/mlflow.db``, never a new empty store in the current folder."""

from __future__ import annotations

from pipeline.tracking.client import TrackingSettings


def test_relative_paths_in_the_file_are_taken_from_its_folder(tmp_path, monkeypatch):
    other = tmp_path / "project"
    other.mkdir()
    config = other / "mlflow.yaml"
    config.write_text(
        "tracking_uri: sqlite:///stores/mlflow.db\nartifact_location: art\nunsent_dir: unsent\n"
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = TrackingSettings.load(config)
    assert settings.tracking_uri == f"sqlite:///{other.resolve()}/stores/mlflow.db"
    assert settings.artifact_location == str(other.resolve() / "art")
    assert settings.unsent_dir == str(other.resolve() / "unsent")


def test_absolute_paths_urls_and_flags_stay_as_given(tmp_path, monkeypatch):
    config = tmp_path / "mlflow.yaml"
    config.write_text(
        "tracking_uri: postgresql://u@db.example/mlflow\nartifact_location: s3://bucket/art\n"
        f"unsent_dir: {tmp_path / 'abs'}\n"
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    settings = TrackingSettings.load(config)
    assert settings.tracking_uri == "postgresql://u@db.example/mlflow"
    assert settings.artifact_location == "s3://bucket/art"
    assert settings.unsent_dir == str(tmp_path / "abs")
    # a --tracking-uri flag is the user's own, relative to where they run
    flagged = TrackingSettings.load(config, tracking_uri="sqlite:///mine.db")
    assert flagged.tracking_uri == "sqlite:///mine.db"
