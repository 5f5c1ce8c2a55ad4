"""``dllm-server``: a real team server on 127.0.0.1 (basic auth, proxied artifacts) and the client's checks."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from dllm_lab.tracking.server import ADMIN_PASSWORD_ENV, ServerSettings, ServerSetupError, read_secret, server_command
from servers import free_port, start_team_server, start_until_healthy, stop_server

ADMIN_PASSWORD = "admin-pass-for-tests-0123"
ALICE_PASSWORD = "alice-pass-for-tests-0123"
TINY_TRAIN = [
    "model=tiny_scratch", "model.init.hidden_size=32", "model.init.num_layers=1", "model.init.num_heads=1",
    "model.init.intermediate_size=64", "model.init.corpus_examples=50", "trainer.max_steps=2",
    "trainer.val_check_interval=2", "trainer.log_every_n_steps=1", "trainer.checkpoint_every_n_steps=2",
    "trainer.num_threads=1", "data.batch_size=4", "data.num_eval=2", "data.eval_batch_size=2",
    "data.num_val_batches=1", "data.min_response_length=0", "data.long_response_prob=0", "decoder.gen_length=8",
    "decoder.block_length=8", "decoder.steps=4", "print_table=false",
]


# ---------------------------------------------------------------- the command, without a server


def test_the_admin_password_never_reaches_the_command_line(tmp_path):
    settings = ServerSettings(base_dir=tmp_path / "srv", port=5123)
    argv, env = server_command(settings, {"DLLM_SERVER_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert ADMIN_PASSWORD not in " ".join(argv)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == ADMIN_PASSWORD
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "--serve-artifacts" in argv and argv[argv.index("--app-name") + 1] == "basic-auth"
    assert env["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{(tmp_path / 'srv').resolve()}/mlflow.db"
    assert "--backend-store-uri" not in argv
    ini = Path(env["MLFLOW_AUTH_CONFIG_PATH"])
    assert ADMIN_PASSWORD not in ini.read_text() and "default_permission = READ" in ini.read_text()
    for private in (ini, tmp_path / "srv" / "flask_secret_key"):
        assert private.stat().st_mode & 0o077 == 0, private  # readable by the owner only
    key = env["MLFLOW_FLASK_SERVER_SECRET_KEY"]
    again = server_command(settings, {"DLLM_SERVER_ADMIN_PASSWORD": "x" * 20})[1]
    assert again["MLFLOW_FLASK_SERVER_SECRET_KEY"] == key


def test_a_postgres_store_keeps_users_beside_the_runs(tmp_path):
    pytest.importorskip("psycopg")
    settings = ServerSettings(base_dir=tmp_path, backend_store_uri="postgresql://mlflow@db:5432/mlflow")
    argv, env = server_command(settings, {"DLLM_SERVER_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert env["MLFLOW_BACKEND_STORE_URI"] == "postgresql://mlflow@db:5432/mlflow"
    assert not any("postgresql" in a for a in argv)  # a password in the URL would show in `ps`
    assert "database_uri = postgresql://mlflow@db:5432/mlflow" in Path(env["MLFLOW_AUTH_CONFIG_PATH"]).read_text()


def test_a_store_whose_driver_is_missing_fails_before_the_server_starts(tmp_path):
    pytest.importorskip("sqlalchemy")
    if importlib.util.find_spec("pymysql") is not None:
        pytest.skip("pymysql is installed here")
    settings = ServerSettings(base_dir=tmp_path, backend_store_uri="mysql+pymysql://mlflow:secret@db/mlflow")
    with pytest.raises(ServerSetupError, match=r"mysql and its driver is missing \(pymysql\)") as err:
        server_command(settings, {"DLLM_SERVER_ADMIN_PASSWORD": ADMIN_PASSWORD})
    assert "secret" not in str(err.value)


def test_a_missing_admin_password_names_both_ways_to_give_it(tmp_path):
    with pytest.raises(ServerSetupError, match=r"DLLM_SERVER_ADMIN_PASSWORD is not set.*never on the command line"):
        server_command(ServerSettings(base_dir=tmp_path), {})
    empty = tmp_path / "empty.txt"
    empty.write_text("\n")
    with pytest.raises(ServerSetupError, match=r"empty\.txt is empty"):
        read_secret("X", empty, "the admin password", {})
    given = tmp_path / "pw.txt"
    given.write_text(f"{ADMIN_PASSWORD}\nignored\n")
    assert read_secret("X", given, "the admin password", {}) == ADMIN_PASSWORD
    argv, env = server_command(ServerSettings(base_dir=tmp_path, auth=False), {})
    assert "--app-name" not in argv and "MLFLOW_AUTH_ADMIN_PASSWORD" not in env


def test_the_cli_refuses_a_password_on_the_command_line():
    out = subprocess.run([sys.executable, "-m", "dllm_lab.cli.server", "--admin-password", "x"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "unrecognized arguments: --admin-password" in out.stderr


# ---------------------------------------------------------------- a real server


def _request(url: str, path: str, user: str | None = None, password: str | None = None,
             body: dict | None = None) -> int:
    import base64

    request = urllib.request.Request(f"{url}{path}", data=json.dumps(body or {}).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    if user:
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - a local test server
            return response.status
    except urllib.error.HTTPError as err:
        return err.code


def _as(monkeypatch, user: str, password: str) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)


def _cli(url: str, *args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dllm_lab.cli.server", *args, "--tracking-uri", url],
                          capture_output=True, text=True, timeout=120, env={**os.environ, **env})


@pytest.fixture(scope="module")
def team_server(tmp_path_factory):
    """``dllm-server`` on 127.0.0.1 with auth and proxied artifacts, and a user ``alice`` (READ by default)."""
    base = tmp_path_factory.mktemp("team_server")
    proc, url = start_team_server(base, ADMIN_PASSWORD)
    admin = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": ADMIN_PASSWORD}
    try:
        made = _cli(url, "add-user", "alice", env={**admin, "DLLM_SERVER_USER_PASSWORD": ALICE_PASSWORD})
        assert made.returncode == 0, made.stderr
        yield {"url": url, "base": base / "server", "admin": admin}
    finally:
        stop_server(proc)


@pytest.mark.server
def test_anonymous_and_wrong_password_requests_are_refused(team_server):
    url = team_server["url"]
    search = "/api/2.0/mlflow/experiments/search"
    assert _request(url, search, body={"max_results": 1}) == 401
    assert _request(url, search, "alice", "wrong-password", {"max_results": 1}) == 401
    assert _request(url, search, "alice", ALICE_PASSWORD, {"max_results": 1}) == 200


@pytest.mark.server
def test_a_read_only_user_cannot_create_runs_in_an_experiment_they_do_not_own(team_server, monkeypatch):
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    from dllm_lab.tracking import check_access

    url = team_server["url"]
    _as(monkeypatch, "admin", ADMIN_PASSWORD)
    experiment_id = MlflowClient(url).create_experiment("team/admins-study")
    _as(monkeypatch, "alice", ALICE_PASSWORD)
    alice = MlflowClient(url)
    assert alice.get_experiment(experiment_id).name == "team/admins-study"  # READ: she sees it
    with pytest.raises(MlflowException, match="403"):
        alice.create_run(experiment_id)
    with pytest.raises(PermissionError) as info:  # the job-start check says who, where and how to fix it
        check_access(url, "team/admins-study")
    message = str(info.value)
    assert "'alice'" in message and "'team/admins-study'" in message and "dllm-server grant alice" in message
    assert alice.search_runs([experiment_id]) == []

    granted = _cli(url, "grant", "alice", "team/admins-study", "edit", env=team_server["admin"])
    assert granted.returncode == 0 and "EDIT" in granted.stdout, granted.stderr
    check_access(url, "team/admins-study", "now writable")
    assert alice.create_run(experiment_id).info.experiment_id == experiment_id

    refused = _cli(url, "grant", "alice", "team/admins-study", "READ",
                   env={"MLFLOW_TRACKING_USERNAME": "alice", "MLFLOW_TRACKING_PASSWORD": ALICE_PASSWORD})
    assert refused.returncode != 0 and "Traceback" not in refused.stderr


@pytest.mark.server
def test_wrong_credentials_fail_at_job_start_before_the_model_is_built(team_server, compose_cfg, monkeypatch):
    import dllm_lab.runs.train as train_body
    from dllm_lab.runs import run_train

    monkeypatch.setattr(train_body, "build_model", lambda job: pytest.fail("the model was built"))
    cfg = compose_cfg("train", [*TINY_TRAIN, f"logger.tracking_uri={team_server['url']}"])
    _as(monkeypatch, "alice", "not-her-password")
    with pytest.raises(PermissionError, match=r"refused user 'alice' \(HTTP 401.*MLFLOW_TRACKING_PASSWORD"):
        run_train(cfg)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    with pytest.raises(PermissionError, match=r"anonymous.*export MLFLOW_TRACKING_USERNAME"):
        run_train(cfg)


@pytest.mark.slow
@pytest.mark.server
def test_an_authenticated_training_run_logs_metrics_and_artifacts_through_the_proxy(team_server, compose_cfg,
                                                                                    tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    from dllm_lab.runs import run_train

    url = team_server["url"]
    _as(monkeypatch, "alice", ALICE_PASSWORD)
    cfg = compose_cfg("train", [*TINY_TRAIN, f"logger.tracking_uri={url}", "logger.experiment_name=alice/proxy"])
    run_train(cfg)

    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("alice/proxy")
    assert experiment.artifact_location.startswith("mlflow-artifacts:")  # clients upload through the server
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED" and run.info.user_id == "alice"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")] == [0, 1]  # a point per step
    local = Path(client.download_artifacts(run.info.run_id, "config.yaml", str(tmp_path / "down")))
    assert "max_steps: 2" in local.read_text()
    stored = list((team_server["base"] / "artifacts").rglob("config.yaml"))
    assert stored and stored[0].read_text() == local.read_text()  # the bytes sit on the server's disk
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
    assert _request(url, "/api/2.0/mlflow/runs/search", body={"experiment_ids": [experiment.experiment_id]}) == 401


# ---------------------------------------------------------------- PostgreSQL, when it is installed


def _postgres_bin() -> Path | None:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    return candidates[-1].parent if candidates else None


@pytest.mark.slow
@pytest.mark.server
def test_the_server_on_postgresql(tmp_path, monkeypatch):
    """The one-line PostgreSQL setup of the README, on a throwaway cluster (skipped without PostgreSQL)."""
    import pwd

    from mlflow.tracking import MlflowClient

    pytest.importorskip("psycopg")
    bin_dir = _postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql)")
    run_as: list[str] = []
    data = tmp_path / "pgdata"
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no postgres user to run PostgreSQL as")
        data = Path("/tmp") / f"dllm-pg-{os.getpid()}-{free_port()}"
        data.mkdir()
        shutil.chown(data, "postgres")
        run_as = ["runuser", "-u", "postgres", "--"]
    pg_port = free_port()
    subprocess.run([*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", "mlflow", "--auth=trust"],
                   check=True, capture_output=True, timeout=120)
    subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", f"-p {pg_port} -k {data} -h 127.0.0.1",
                    "-l", str(data / "log"), "-w", "start"], check=True, capture_output=True, timeout=120)
    proc = None
    try:
        uri = f"postgresql://mlflow@127.0.0.1:{pg_port}/postgres"
        port = free_port()
        proc = start_until_healthy([sys.executable, "-m", "dllm_lab.cli.server", "--port", str(port),
                                    "--base-dir", str(tmp_path / "server"), "--backend-store-uri", uri],
                                   tmp_path, port, env={"DLLM_SERVER_ADMIN_PASSWORD": ADMIN_PASSWORD}, timeout=180)
        url = f"http://127.0.0.1:{port}"
        assert _request(url, "/api/2.0/mlflow/experiments/search", body={"max_results": 1}) == 401
        _as(monkeypatch, "admin", ADMIN_PASSWORD)
        client = MlflowClient(url)
        run = client.create_run(client.create_experiment("pg/check"))
        client.log_metric(run.info.run_id, "x", 1.5)
        assert client.get_run(run.info.run_id).data.metrics == {"x": 1.5}
        assert not (tmp_path / "server" / "mlflow.db").exists()  # the runs live in PostgreSQL
    finally:
        if proc is not None:
            stop_server(proc)
        subprocess.run([*run_as, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60)
        shutil.rmtree(data, ignore_errors=True)


# ---------------------------------------------------------------- the compose file of the README


def test_the_compose_file_runs_dllm_server_on_postgres_without_secrets_in_it():
    """deploy/compose.yaml as written: the server's command is one dllm-server accepts, the store is the compose
    PostgreSQL service, and no password sits in the file (they come from team.env). Docker itself is not run."""
    import yaml

    from dllm_lab.cli.server import _parser
    from dllm_lab.paths import project_root

    deploy = project_root() / "deploy"
    compose = yaml.safe_load((deploy / "compose.yaml").read_text())
    server, db = compose["services"]["mlflow"], compose["services"]["db"]
    args = _parser().parse_args(server["command"])
    assert args.command == "serve" and args.host == "0.0.0.0" and args.port == 5000 and not args.no_auth
    store = server["environment"]["DLLM_SERVER_BACKEND_STORE_URI"]
    assert store == f"postgresql://{db['environment']['POSTGRES_USER']}@db:5432/{db['environment']['POSTGRES_DB']}"
    assert server["env_file"] == db["env_file"] == "team.env"
    assert "deploy/team.env" in (project_root() / ".gitignore").read_text().splitlines()
    example = dict(line.split("=", 1) for line in (deploy / "team.env.example").read_text().splitlines()
                   if line and not line.startswith("#"))
    assert set(example) == {ADMIN_PASSWORD_ENV, "POSTGRES_PASSWORD", "PGPASSWORD"}
    text = (deploy / "compose.yaml").read_text()
    assert not any(value in text for value in example.values()), "passwords live in team.env, not here"
    assert 'ENTRYPOINT ["dllm-server"]' in (deploy / "Dockerfile").read_text()
