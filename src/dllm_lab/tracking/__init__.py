"""Tracking: the MLflow logger factory and RunLogger (non-blocking, honest run states), tags, configs, artifacts."""

from dllm_lab.tracking.mlflow import (
    check_access,
    check_server,
    flatten,
    git_commit,
    log_config,
    log_file,
    log_table,
    log_text,
    make_mlflow_logger,
    safe_metric_name,
    set_experiment_description,
    set_tag,
)
from dllm_lab.tracking.resilient import RunLogger, guarded

__all__ = [
    "RunLogger", "check_access", "check_server", "flatten", "git_commit", "guarded", "log_config", "log_file",
    "log_table", "log_text", "make_mlflow_logger", "safe_metric_name", "set_experiment_description", "set_tag",
]
