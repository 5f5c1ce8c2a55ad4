"""``run_eval(cfg)`` and ``evaluate(...)``: decode the eval sets, log metrics, tables and predictions."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
from omegaconf import DictConfig

from dllm_lab.config import validate_config
from dllm_lab.data import TaskDataModule
from dllm_lab.decoding import DecodeConfig
from dllm_lab.evaluation.module import EvalModule
from dllm_lab.evaluation.report import format_table, results_from_metrics
from dllm_lab.evaluation.temporal import TemporalSettings
from dllm_lab.factory import build_datamodule, build_logger, build_model, build_trainer
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.paths import project_root

log = logging.getLogger(__name__)


def evaluate(cfg: DictConfig, lm: DiffusionLM, datamodule: TaskDataModule, logger, root: Path) -> dict[str, Any]:
    """Run the test loop with ``cfg.decoder`` on ``datamodule``'s eval sets; returns flat metrics."""
    decode_config = DecodeConfig.from_dict(dict(cfg.decoder))
    temporal = TemporalSettings.from_config(cfg.get("temporal"))
    results, is_zero = evaluate_decoder(
        lm, datamodule, decode_config, cfg.trainer, logger, cfg.paths.output_dir, temporal, cfg.paths.output_dir
    )
    table = format_table(results)
    if is_zero and cfg.get("print_table", True):
        _print_summary(table, logger, cfg)
    return {f"eval/{t}/{k}": v for t, row in results.items() for k, v in row.items()} | {"table": table}


def evaluate_decoder(
    lm: DiffusionLM, datamodule: TaskDataModule, decode_config: DecodeConfig, trainer_cfg: DictConfig, logger,
    output_dir: str, temporal: TemporalSettings | None = None, records_dir: str | Path | None = None,
) -> tuple[dict[str, dict[str, float]], bool]:
    """Per-task results of one decoder (and whether this process is rank 0). With ``temporal``, rank 0
    also writes ``temporal/<task>.parquet`` and ``plots/*.png`` under ``records_dir`` (when given)."""
    module = EvalModule(
        lm, decode_config, datamodule.eval_task_names, datamodule.prompt_style, temporal, records_dir
    )
    trainer = build_trainer(trainer_cfg, logger, [], str(output_dir))
    trainer.test(module, datamodule=datamodule, verbose=False)
    # Read results back from the logged metrics: under ddp_spawn the module here was never run.
    return results_from_metrics(trainer.callback_metrics, datamodule.eval_task_names), trainer.is_global_zero


def _print_summary(table: str, logger, cfg: DictConfig) -> None:
    print("\n" + table)
    if logger is None:
        return
    uri = cfg.logger.tracking_uri
    print(f"\nMLflow run {logger.run_id} in experiment '{cfg.logger.experiment_name}'.")
    if uri.startswith("sqlite:"):
        print(f"Open the UI with:  mlflow ui --backend-store-uri {uri}   (then http://127.0.0.1:5000)")
    else:
        print(f"Open {uri} in a browser.")


def run_eval(cfg: DictConfig) -> dict[str, Any]:
    """Load the model in ``cfg.model``, decode ``cfg.data.eval_tasks`` with ``cfg.decoder``, log all."""
    validate_config(cfg, stage="eval")
    TemporalSettings.from_config(cfg.get("temporal"))  # a bad temporal.* value fails before any model loads
    root = project_root()
    L.seed_everything(cfg.seed, workers=True)
    lm = build_model(cfg.model, cfg.data, seed=cfg.seed)
    datamodule = build_datamodule(cfg.data, lm, seed=cfg.seed)
    logger = build_logger(cfg, root)
    if cfg.get("sweep"):
        from dllm_lab.evaluation.sweep import run_sweep

        return run_sweep(cfg, lm, datamodule, logger, root)
    return evaluate(cfg, lm, datamodule, logger, root)
