"""Thin Hydra entry points: ``dllm-train`` and ``dllm-eval`` (plus checkpoint export)."""

from __future__ import annotations

import logging
from collections.abc import Callable


class _NoAdverts(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "💡 Tip" not in record.getMessage()


def tidy_lightning_logging() -> None:
    """Lightning adds its own console handlers on top of Hydra's root logger, so every line shows twice;
    keep Hydra's (console + file) and drop Lightning's product tips."""
    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
        logger.addFilter(_NoAdverts())
    for handler in logging.getLogger().handlers:
        handler.addFilter(_NoAdverts())


def study_report_main(description: str, study: str, write_report: Callable[[str, str], str]) -> None:
    """The shell of a study-table command: ``--tracking-uri`` (default ``$MLFLOW_TRACKING_URI`` or the
    project's ``mlflow.db``) and ``--out`` (default ``experiments/<study>``), then ``write_report(uri, out)``."""
    import argparse
    import os

    from dllm_lab.paths import project_root

    root = project_root()
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--tracking-uri", default=os.environ.get("MLFLOW_TRACKING_URI", f"sqlite:///{root}/mlflow.db"))
    parser.add_argument("--out", default=str(root / "experiments" / study))
    args = parser.parse_args()
    print(write_report(args.tracking_uri, args.out))
