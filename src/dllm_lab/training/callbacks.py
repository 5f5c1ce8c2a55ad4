"""Lightning callbacks for training runs: self-describing exports and the training curve."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.utilities import rank_zero_only


def export_pretrained(lm, directory: str | Path, config_yaml: str, curve: list[dict[str, Any]] | None = None) -> Path:
    """Write weights + tokenizer (``save_pretrained``), the resolved ``config.yaml`` and the curve."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lm.save_pretrained(directory)
    (directory / "config.yaml").write_text(config_yaml)
    if curve:
        keys = sorted({k for row in curve for k in row}, key=lambda k: (k != "step", k))
        with (directory / "training_curve.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=keys)
            writer.writeheader()
            writer.writerows(curve)
    return directory


class TrainingCurve(L.Callback):
    """Collects ``train/loss`` and ``val/loss`` by step (rank 0) for the exported training curve."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if step % max(1, trainer.log_every_n_steps) == 0 and "train/loss" in trainer.callback_metrics:
            self.rows.append({"step": step, "train_loss": float(trainer.callback_metrics["train/loss"])})

    @rank_zero_only
    def on_validation_end(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and "val/loss" in trainer.callback_metrics:
            self.rows.append({"step": trainer.global_step, "val_loss": float(trainer.callback_metrics["val/loss"])})

    def state_dict(self) -> dict[str, Any]:
        return {"rows": self.rows}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows = list(state.get("rows", []))


class MLflowRunId(L.Callback):
    """Stores the MLflow run id in each checkpoint so a resumed job continues the same run."""

    def on_save_checkpoint(self, trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        run_id = getattr(trainer.logger, "run_id", None)
        if run_id:
            checkpoint["mlflow_run_id"] = run_id
