"""``evaluate_decoder``: one decoder over a DataModule's evaluation sets, through Lightning's test loop."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from dllm_lab.data import TaskDataModule
from dllm_lab.decoding import DecodeCallback, DecodeConfig
from dllm_lab.evaluation.module import EvalModule
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.temporal import TemporalSettings, results_from_metrics
from dllm_lab.training.trainer import TrainerSettings


def evaluate_decoder(
    lm: DiffusionLM, datamodule: TaskDataModule, decoder: DecodeConfig, trainer: TrainerSettings, logger,
    output_dir: str | Path, temporal: TemporalSettings | None = None, records_dir: str | Path | None = None,
    callbacks: Sequence[DecodeCallback] = (), prefix: str = "eval",
) -> tuple[dict[str, dict[str, float]], bool]:
    """Per-task results of one decoder (and whether this process is rank 0). With ``temporal``, rank 0
    also writes ``temporal/<task>.parquet`` and ``plots/*.png`` under ``records_dir`` (when given).
    ``callbacks``: user decoding callbacks that ride along every decode. ``prefix``: the metrics' first name
    component (``eval``, or ``eval_<name>`` for a run's further decoders)."""
    module = EvalModule(lm, decoder, datamodule.eval_task_names, datamodule.prompt_style, temporal, records_dir,
                        callbacks, prefix)
    pl_trainer = trainer.build(logger, [], str(output_dir))
    pl_trainer.test(module, datamodule=datamodule, verbose=False)
    # Read results back from the logged metrics: under ddp_spawn the module here was never run.
    results = results_from_metrics(pl_trainer.callback_metrics, datamodule.eval_task_names, prefix)
    return results, pl_trainer.is_global_zero
