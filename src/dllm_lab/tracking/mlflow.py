"""MLflow tracking: one logger factory, run tags, config logging and artifacts.

The default store is ``sqlite:///<project>/mlflow.db`` with artifacts in ``<project>/mlartifacts``;
``MLFLOW_TRACKING_URI=http://host:5000`` sends everything to a team server instead. MLflow's
``./mlruns`` file store is refused by current MLflow and never used here.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
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
