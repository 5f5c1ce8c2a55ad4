"""MLflow tracking: one logger factory, run tags, config logging and artifacts.

The default store is ``sqlite:///<project>/mlflow.db`` with artifacts in ``<project>/mlartifacts``;
``MLFLOW_TRACKING_URI=http://host:5000`` sends everything to a team server instead. MLflow's
``./mlruns`` file store is refused by current MLflow and never used here.
"""

from __future__ import annotations

import contextlib
import re
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import MLFlowLogger

from dllm_lab.tracking.resilient import RunLogger, apply_client_defaults, guarded

_UNSAFE = re.compile(r"[^A-Za-z0-9_\-./]")


def safe_metric_name(name: str) -> str:
    """Names in ``[A-Za-z0-9_/.-]`` (portable across MLflow stores and UIs): ``pass@1`` -> ``pass_at_1``,
    anything else (spaces included) -> ``_``."""
    return _UNSAFE.sub("_", name.replace("@", "_at_"))


def git_commit(root: Path) -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


SERVER_CHECK_TIMEOUT_S = 5.0


def check_server(tracking_uri: str, timeout: float = SERVER_CHECK_TIMEOUT_S) -> None:
    """Fail in seconds, not minutes of client retries, when an ``http(s)://`` tracking server does not
    answer its ``/health`` endpoint. Other URIs (sqlite, databricks) are not checked."""
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import urllib.error
    import urllib.request

    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - the user's own server
            if response.status == 200:
                return
            problem = f"HTTP {response.status}"
    except urllib.error.HTTPError as err:
        problem = f"HTTP {err.code}"
    except (urllib.error.URLError, OSError, TimeoutError) as err:
        problem = str(getattr(err, "reason", err))
    raise ConnectionError(
        f"the MLflow server at {tracking_uri} does not answer ({url}: {problem}, {timeout:.0f} s timeout). "
        "Start it (dllm-server / mlflow server), fix MLFLOW_TRACKING_URI or logger.tracking_uri, or run "
        "without tracking: logger=none"
    )


DESCRIPTION_TAG = "mlflow.note.content"  # what the MLflow UI shows as an experiment's description
EXPERIMENT_KIND = ("mlflow.experimentKind", "custom_model_development")  # MLflow 3: a training experiment


def _http_status(err: Exception) -> int | None:
    code = getattr(err, "get_http_status_code", lambda: None)()
    if code in (401, 403):
        return code
    match = re.search(r"error code (\d{3})", str(err))
    return int(match.group(1)) if match else code


def check_access(tracking_uri: str, experiment_name: str, description: str | None = None) -> None:
    """Before a model is built: the server answers, accepts the credentials and lets this user write to
    ``experiment_name``.

    The write check is a real write that every run wants anyway: the experiment (created when missing) gets
    its description. MLflow's basic auth refuses it with 403 exactly when it would refuse to create a run
    there. Credentials are MLflow's own ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD``.
    """
    check_server(tracking_uri)
    if not tracking_uri.startswith(("http://", "https://")):
        return
    import os

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    apply_client_defaults()
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    who = f"user {user!r}" if user else "an anonymous client (MLFLOW_TRACKING_USERNAME is not set)"
    client = MlflowClient(tracking_uri=tracking_uri)
    step = "read"
    try:
        experiment = client.get_experiment_by_name(experiment_name)
        step = "create"
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(experiment_name)
        step = "write"
        client.set_experiment_tag(experiment_id, DESCRIPTION_TAG, description or experiment_name)
    except MlflowException as err:
        status = _http_status(err)
        if status == 401:
            fix = ("check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" if user else
                   "export MLFLOW_TRACKING_USERNAME=<user> MLFLOW_TRACKING_PASSWORD=<password>")
            raise PermissionError(f"the MLflow server at {tracking_uri} refused {who} (HTTP 401: not "
                                  f"authenticated): {fix}, or run without tracking: logger=none") from None
        if status == 403:
            action = {"read": "read", "create": "create", "write": "write to"}[step]
            raise PermissionError(
                f"{who} may not {action} the MLflow experiment {experiment_name!r} on {tracking_uri} (HTTP 403). "
                f"Ask the server's admin (dllm-server grant {user or '<user>'} {experiment_name} EDIT), or log "
                f"to an experiment of your own: logger.experiment_name=dllm-lab/{user or '<user>'}/<name>"
            ) from None
        raise


def make_mlflow_logger(
    tracking_uri: str,
    experiment_name: str,
    run_name: str | None,
    root: Path,
    tags: dict[str, Any] | None = None,
    artifact_location: str | None = None,
    run_id: str | None = None,
    output_dir: str | Path | None = None,
) -> RunLogger:
    """A :class:`~dllm_lab.tracking.resilient.RunLogger` (rank 0 creates the run; other ranks get a no-op
    experiment); unsent metrics at the end go to ``output_dir``."""
    if tracking_uri.startswith("file:") or (
        "://" not in tracking_uri and not tracking_uri.startswith("databricks")
    ):
        raise ValueError(
            f"logger.tracking_uri={tracking_uri!r}: MLflow's file store is not supported; use "
            "sqlite:///<path>/mlflow.db or a server http://host:port"
        )
    if artifact_location is None and tracking_uri.startswith("sqlite:"):
        artifact_location = (root / "mlartifacts").as_uri()
    all_tags = {"git_commit": git_commit(root), **{k: str(v) for k, v in (tags or {}).items()}}
    apply_client_defaults()
    with _store_lock(tracking_uri):  # the client opens the store: one process at a time may create its tables
        return RunLogger(
            experiment_name=experiment_name,
            run_name=run_name,
            tracking_uri=tracking_uri,
            tags=all_tags,
            artifact_location=artifact_location,
            run_id=run_id,
            log_model=False,
            output_dir=output_dir,
        )


@contextlib.contextmanager
def _store_lock(tracking_uri: str) -> Iterator[None]:
    """For a ``sqlite:///`` store, an exclusive lock beside the database file while a client opens it. Every process
    of a job makes a logger (torchrun starts them at once), and two that create a new store's tables together make
    MLflow's migration fail in one of them. Other stores need no lock."""
    path = tracking_uri.removeprefix("sqlite:///")
    if not tracking_uri.startswith("sqlite:///") or path in ("", ":memory:"):
        yield
        return
    import fcntl

    lock = Path(path).with_name(Path(path).name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def log_config(logger: MLFlowLogger, config: dict[str, Any], yaml_text: str) -> None:
    """Flattened params (``model.name_or_path`` ...) and the full resolved YAML as ``config.yaml``."""
    params = {k: ("null" if v is None else str(v)[:6000]) for k, v in flatten(config).items()}
    logger.log_hyperparams(params)
    log_text(logger, yaml_text, "config.yaml")


def log_text(logger: MLFlowLogger, text: str, artifact_file: str) -> None:
    guarded(logger, artifact_file, lambda: logger.experiment.log_text(logger.run_id, text, artifact_file))


def log_file(logger: MLFlowLogger, path: str | Path, artifact_path: str | None = None) -> None:
    where = f"{artifact_path}/{Path(path).name}" if artifact_path else Path(path).name
    guarded(logger, where, lambda: logger.experiment.log_artifact(logger.run_id, str(path), artifact_path))


def set_tag(logger: MLFlowLogger, key: str, value: str) -> None:
    guarded(logger, f"tag {key}", lambda: logger.experiment.set_tag(logger.run_id, key, value))


def set_experiment_description(logger: MLFlowLogger, text: str) -> None:
    """The experiment's description in the MLflow UI (its ``mlflow.note.content`` tag), and its kind: model
    training, so MLflow 3's UI opens it on the runs table rather than the GenAI trace views."""
    def tag() -> None:
        logger.experiment.set_experiment_tag(logger.experiment_id, DESCRIPTION_TAG, text)
        logger.experiment.set_experiment_tag(logger.experiment_id, *EXPERIMENT_KIND)

    guarded(logger, "experiment description", tag)


def log_table(logger: MLFlowLogger, rows: list[dict[str, Any]], artifact_file: str) -> None:
    """Rows as a JSON table artifact (readable by ``mlflow.load_table``) or ``.jsonl``/``.csv``."""
    import pandas as pd

    frame = pd.DataFrame(rows)
    if artifact_file.endswith(".json"):
        guarded(logger, artifact_file,
                lambda: logger.experiment.log_table(logger.run_id, data=frame, artifact_file=artifact_file))
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(artifact_file).name
        if artifact_file.endswith(".csv"):
            frame.to_csv(path, index=False)
        else:
            frame.to_json(path, orient="records", lines=True)
        parent = str(Path(artifact_file).parent)
        log_file(logger, path, None if parent == "." else parent)
