"""Tracking: MLflow logger factory, tags, configs and artifacts."""

from dllm_lab.tracking.mlflow import (
    check_server,
    flatten,
    git_commit,
    log_config,
    log_file,
    log_table,
    log_text,
    make_mlflow_logger,
    safe_metric_name,
)

__all__ = [
    "check_server", "flatten", "git_commit", "log_config", "log_file", "log_table", "log_text", "make_mlflow_logger",
    "safe_metric_name",
]
