"""``pipeline ui --auth``: MLflow's own basic-auth app in front of the UI and its REST API."""

from __future__ import annotations

import atexit
import os
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.tracking.client import TrackingSettings


#: MLflow's basic-auth app (``mlflow server --app-name basic-auth``, the "MLflow
#: Authentication" docs): HTTP basic auth on the UI and the REST API, users and permissions
#: in a SQLite file of their own; the admin user it creates on first start, and the variable
#: holding that user's password (MLflow's own; read on the first start only)
ADMIN_USER = "admin"
ADMIN_PASSWORD_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD"
USERS_FILE = "basic_auth.db"


def auth_users_file(tracking: TrackingSettings) -> Path:
    """Where ``pipeline ui --auth`` keeps its users: beside a SQLite tracking store, so that
    the store and who may see it move together; else in the current folder (MLflow's
    default)."""
    from pipeline.tracking.sqlite_store import sqlite_file

    store = sqlite_file(tracking.tracking_uri)
    folder = store.resolve().parent if store is not None else Path.cwd()
    return folder / USERS_FILE


def auth_settings(users: Path) -> tuple[list[str], dict[str, str]]:
    """``mlflow server`` arguments and environment for its basic-auth app, with users in
    ``users``. The configuration file is MLflow's own ``basic_auth.ini`` with the users'
    database moved; a logged-in user may read every run (MLflow's default permission READ),
    only the admin (and users given more) may change them."""
    import configparser
    import tempfile

    from mlflow.server import auth

    config = configparser.ConfigParser()
    config.read(Path(auth.__file__).with_name("basic_auth.ini"))
    config["mlflow"]["database_uri"] = f"sqlite:///{users}"
    config["mlflow"]["admin_username"] = ADMIN_USER
    folder = tempfile.mkdtemp(prefix="pipeline-ui-auth-")  # private (0700), removed at exit
    path = Path(folder) / "basic_auth.ini"
    with path.open("w") as out:
        config.write(out)
    atexit.register(shutil.rmtree, folder, True)
    env = {"MLFLOW_AUTH_CONFIG_PATH": str(path)}
    # the app's CSRF protection signs with this key; one server, so a fresh one per start
    # (a user's own, for several servers behind one name, is kept)
    env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = os.environ.get(
        "MLFLOW_FLASK_SERVER_SECRET_KEY", secrets.token_hex(32)
    )
    return ["--app-name", "basic-auth"], env
