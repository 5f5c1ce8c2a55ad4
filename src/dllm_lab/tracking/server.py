"""``dllm-server``: MLflow's own tracking server, set up the way a team needs it.

- a database backend: SQLite in the server's directory by default, PostgreSQL when a URL is given;
- proxied artifacts (``--serve-artifacts``): clients upload through the server and need no shared disk;
- MLflow's basic authentication on by default (``--app-name basic-auth``). The admin password comes from
  ``DLLM_SERVER_ADMIN_PASSWORD`` or a file (``--admin-password-file``), never from the command line,
  where ``ps`` and shell histories would show it;
- 127.0.0.1 unless ``--host`` says otherwise.

Users and permissions are MLflow's (``default_permission = READ``: every user reads every experiment,
and writes only where granted or where they created the experiment). ``dllm-server add-user`` and
``dllm-server grant`` call the running server's auth API as the admin.
"""

from __future__ import annotations

import os
import secrets
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

ADMIN_PASSWORD_ENV = "DLLM_SERVER_ADMIN_PASSWORD"
USER_PASSWORD_ENV = "DLLM_SERVER_USER_PASSWORD"
STORE_URI_ENV = "DLLM_SERVER_BACKEND_STORE_URI"  # the runs database URL, when it should not be on the command line
SECRET_KEY_ENV = "MLFLOW_FLASK_SERVER_SECRET_KEY"  # MLflow's CSRF key; generated and kept per server otherwise
PERMISSIONS = ("READ", "USE", "EDIT", "MANAGE", "NO_PERMISSIONS")


class ServerSetupError(RuntimeError):
    """A server setting that cannot work; the message names the fix."""


@dataclass
class ServerSettings:
    """What ``dllm-server`` starts. base_dir holds the default SQLite stores, artifacts, the auth config
    and the CSRF key; backend_store_uri: ``sqlite:///...`` or ``postgresql://user@host/db``."""

    base_dir: Path
    host: str = "127.0.0.1"
    port: int = 5000
    backend_store_uri: str | None = None
    artifacts_destination: str | None = None
    auth: bool = True
    admin_username: str = "admin"
    admin_password_file: Path | None = None
    default_permission: str = "READ"
    workers: int = 1

    @property
    def store_uri(self) -> str:
        return self.backend_store_uri or f"sqlite:///{self.base_dir.resolve()}/mlflow.db"

    @property
    def auth_store_uri(self) -> str:
        """Users and permissions live beside the runs: the same PostgreSQL database, or ``auth.db``."""
        if self.store_uri.startswith("postgresql"):
            return self.store_uri
        return f"sqlite:///{self.base_dir.resolve()}/auth.db"


def read_secret(env_name: str, path: Path | None, what: str, environ: dict[str, str] | None = None) -> str:
    """A password from a file (first line) or from ``env_name``; a clear error naming both otherwise."""
    environ = os.environ if environ is None else environ
    if path is not None:
        try:
            lines = Path(path).read_text().strip().splitlines()
        except OSError as err:
            raise ServerSetupError(f"{what}: cannot read {path} ({err.strerror})") from None
        value = lines[0].strip() if lines else ""
    else:
        value = environ.get(env_name, "").strip()
    if not value:
        where = f"the file {path} is empty" if path is not None else f"{env_name} is not set"
        raise ServerSetupError(f"{what}: {where}. Export {env_name}=<password> or give a file with the password "
                               "(never on the command line)")
    return value


def _private_file(path: Path, text: str) -> None:
    path.write_text(text)
    path.chmod(stat.S_IRUSR | stat.S_IWUSR)


def secret_key(base_dir: Path, environ: dict[str, str] | None = None) -> str:
    """MLflow's CSRF key: the environment's, or one generated once and kept in ``base_dir/flask_secret_key``
    (mode 600) so that restarts and several workers agree."""
    environ = os.environ if environ is None else environ
    if environ.get(SECRET_KEY_ENV):
        return environ[SECRET_KEY_ENV]
    path = base_dir / "flask_secret_key"
    if not path.exists():
        _private_file(path, secrets.token_hex(32))
    return path.read_text().strip()


def write_auth_config(settings: ServerSettings) -> Path:
    """MLflow's basic-auth ini in ``base_dir`` (mode 600). The admin password is not written: MLflow reads it
    from ``MLFLOW_AUTH_ADMIN_PASSWORD`` when it creates the admin user on first start."""
    if settings.default_permission not in PERMISSIONS:
        raise ServerSetupError(f"--default-permission={settings.default_permission}: choose one of {PERMISSIONS}")
    path = settings.base_dir / "basic_auth.ini"
    _private_file(path, "\n".join([
        "[mlflow]",
        f"default_permission = {settings.default_permission}",
        f"database_uri = {settings.auth_store_uri}",
        f"admin_username = {settings.admin_username}",
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth",
        "",
    ]))
    return path


def _check_database_driver(uri: str) -> None:
    """The database driver SQLAlchemy picks for ``uri`` imports (``postgresql://``: psycopg 3), else a clear error
    now rather than a traceback from the server's first request."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    try:
        url = make_url(uri)
        url.get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError) as err:
        raise ServerSetupError(f"--backend-store-uri is not a database URL SQLAlchemy knows: {err}") from None
    except ImportError as err:
        hint = ("pip install 'dllm-lab[postgres]' (psycopg 3)" if url.get_backend_name() == "postgresql"
                else f"install the driver for {url.drivername}")
        raise ServerSetupError(f"--backend-store-uri is {url.get_backend_name()} and its driver is missing "
                               f"({err.name or err}): {hint}") from None


def server_command(settings: ServerSettings, environ: dict[str, str] | None = None) -> tuple[list[str], dict[str, str]]:
    """The ``mlflow server`` command line and environment for ``settings`` (creates ``base_dir`` and, with
    auth, its config and key). Secrets travel in the environment only."""
    environ = dict(os.environ if environ is None else environ)
    settings.base_dir.mkdir(parents=True, exist_ok=True)
    settings.base_dir.chmod(stat.S_IRWXU)  # stores, keys and config: the server's account only
    artifacts = settings.artifacts_destination or str((settings.base_dir / "artifacts").resolve())
    if not settings.store_uri.startswith("sqlite"):
        _check_database_driver(settings.store_uri)
    argv = [sys.executable, "-m", "mlflow", "server", "--host", settings.host, "--port", str(settings.port),
            "--serve-artifacts", "--artifacts-destination", artifacts, "--workers", str(settings.workers)]
    # the store URL travels in the environment: a database password in it never shows in `ps`
    env = {**environ, "OMP_NUM_THREADS": environ.get("OMP_NUM_THREADS", "1"),
           "MLFLOW_BACKEND_STORE_URI": settings.store_uri}
    env.pop("MLFLOW_TRACKING_URI", None)
    if settings.auth:
        password = read_secret(ADMIN_PASSWORD_ENV, settings.admin_password_file, "the admin password", environ)
        argv += ["--app-name", "basic-auth"]
        env.update({"MLFLOW_AUTH_CONFIG_PATH": str(write_auth_config(settings)),
                    "MLFLOW_AUTH_ADMIN_PASSWORD": password,
                    SECRET_KEY_ENV: secret_key(settings.base_dir, environ)})
    return argv, env


def shown_uri(uri: str) -> str:
    """``uri`` with any password replaced by ``***``."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(uri).render_as_string(hide_password=True)
    except ArgumentError:
        return uri


def serve(settings: ServerSettings) -> None:
    """Replace this process with ``mlflow server`` (signals and exit code are then MLflow's own)."""
    argv, env = server_command(settings)
    where = f"http://{settings.host}:{settings.port}"
    auth = f"basic auth on, admin user {settings.admin_username!r}" if settings.auth else "NO authentication"
    print(f"dllm-server: {where} (store {shown_uri(settings.store_uri)}, artifacts proxied, {auth})", flush=True)
    if settings.host not in ("127.0.0.1", "localhost", "::1") and not settings.auth:
        print("dllm-server: warning: listening beyond this machine without authentication", file=sys.stderr)
    os.execve(argv[0], argv, env)


# -- the admin's side: users and grants on a running server ------------------------------------------------
def auth_client(tracking_uri: str):
    """MLflow's basic-auth client, authenticated by ``MLFLOW_TRACKING_USERNAME``/``PASSWORD`` (the admin)."""
    from mlflow.server import get_app_client

    return get_app_client("basic-auth", tracking_uri=tracking_uri)


def add_user(tracking_uri: str, username: str, password: str) -> None:
    auth_client(tracking_uri).create_user(username=username, password=password)


def grant(tracking_uri: str, username: str, experiment_name: str, permission: str) -> str:
    """Give ``username`` ``permission`` on ``experiment_name`` (created first when missing); returns its id."""
    from mlflow.tracking import MlflowClient

    permission = permission.upper()
    if permission not in PERMISSIONS:
        raise ServerSetupError(f"permission {permission!r}: choose one of {PERMISSIONS}")
    auth = auth_client(tracking_uri)
    auth.get_user(username)  # an unknown user fails here, before an experiment is made for them
    client = MlflowClient(tracking_uri=tracking_uri)
    experiment = client.get_experiment_by_name(experiment_name)
    experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
    if hasattr(auth, "create_experiment_permission"):  # MLflow 2.x / early 3.x
        auth.create_experiment_permission(experiment_id=experiment_id, username=username, permission=permission)
    else:  # later 3.x: one grant API for every resource type
        auth.grant_user_permission(username=username, resource_type="experiment", resource_id=experiment_id,
                                   permission=permission)
    return experiment_id
