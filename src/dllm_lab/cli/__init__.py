"""Thin Hydra entry points: ``dllm-train`` and ``dllm-eval`` (plus checkpoint export)."""

from __future__ import annotations

import logging
from collections.abc import Callable

# below WARNING, these loggers only narrate (device discovery, seeds, database migrations) on the console
NARRATORS = ("lightning", "mlflow", "alembic", "transformers", "urllib3")
NOISE = ("💡 Tip", "not found. Creating it.")  # product tips; MLflow's logger creating a new experiment


class _Quiet(logging.Filter):
    """The console handler's filter: no product tips; with ``narrators``, no INFO lines from them either."""

    def __init__(self, narrators: bool) -> None:
        super().__init__()
        self.narrators = narrators

    def filter(self, record: logging.LogRecord) -> bool:
        if any(text in record.getMessage() for text in NOISE):
            return False
        return not (self.narrators and record.levelno < logging.WARNING and record.name.startswith(NARRATORS))


def tidy_terminal(verbose: bool = False) -> None:
    """What the console shows of a run: the live progress, our own log lines, warnings and the results.

    Lightning adds its own console handlers on top of Hydra's root logger, so every line would show twice:
    Hydra's (console + file) are kept. Unless ``verbose``, Lightning's, MLflow's and transformers' INFO lines,
    their progress bars (weights loading, artifact downloads) and a known torch/Lightning deprecation warning
    stay off the console; the job's log file still gets every logged line."""
    import os
    import warnings

    for name in ("lightning.pytorch", "lightning.fabric", "lightning"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
                logger.removeHandler(handler)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(handler, logging.FileHandler):
            handler.addFilter(_Quiet(narrators=not verbose))
        else:
            handler.addFilter(_Quiet(narrators=False))
    if verbose:
        return
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")  # read when mlflow is first imported
    logging.getLogger("mlflow").setLevel(logging.WARNING)  # in case it already was
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


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
