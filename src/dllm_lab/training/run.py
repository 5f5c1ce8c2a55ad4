"""``run_train(cfg)``: the body of the training entry point, callable from tests and notebooks."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from dllm_lab.config import validate_config
from dllm_lab.factory import build_datamodule, build_logger, build_model, build_trainer
from dllm_lab.paths import project_root
from dllm_lab.training.callbacks import MLflowRunId, TrainingCurve, export_pretrained
from dllm_lab.training.mdlm import MDLMModule

log = logging.getLogger(__name__)


def _resume_run_id(ckpt_path: str | None) -> str | None:
    if not ckpt_path:
        return None
    if not Path(ckpt_path).exists():
        raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
    return torch.load(ckpt_path, map_location="cpu", weights_only=False).get("mlflow_run_id")


def run_train(cfg: DictConfig) -> dict[str, Any]:
    """Train with the masked diffusion objective; optionally export and evaluate. Returns metrics."""
    validate_config(cfg, stage="train")
    root = project_root()
    L.seed_everything(cfg.seed, workers=True)
    lm = build_model(cfg.model, cfg.data, seed=cfg.seed)
    datamodule = build_datamodule(cfg.data, lm, seed=cfg.seed)
    run_config = OmegaConf.to_container(cfg, resolve=True)
    module = MDLMModule(
        lm,
        lr=cfg.algo.lr,
        weight_decay=cfg.algo.weight_decay,
        betas=tuple(cfg.algo.betas),
        warmup_steps=cfg.algo.warmup_steps,
        total_steps=cfg.trainer.max_steps,
        min_lr_ratio=cfg.algo.min_lr_ratio,
        run_config=run_config,
    )
    logger = build_logger(cfg, root, run_id=_resume_run_id(cfg.get("ckpt_path")))
    output_dir = Path(cfg.paths.output_dir)
    curve = TrainingCurve()
    callbacks = [
        curve,
        MLflowRunId(),
        ModelCheckpoint(
            dirpath=output_dir / "checkpoints",
            every_n_train_steps=cfg.trainer.checkpoint_every_n_steps,
            save_top_k=-1,
            save_last=True,
        ),
    ]
    trainer = build_trainer(cfg.trainer, logger, callbacks, str(output_dir))
    trainer.fit(module, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
    metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}

    if cfg.get("export_dir") and trainer.is_global_zero and not cfg.trainer.fast_dev_run:
        export = export_pretrained(lm, cfg.export_dir, OmegaConf.to_yaml(cfg, resolve=True), curve.rows)
        _plot_curve(curve.rows, export / "training_curve.png")
        log.info("exported the trained model to %s", export)
    if cfg.get("eval_after_fit"):
        from dllm_lab.evaluation.run import evaluate

        metrics.update(evaluate(cfg, lm, datamodule, logger, root))
    return metrics


@rank_zero_only
def _plot_curve(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.2))
    for key in ("train_loss", "val_loss"):
        pts = [(r["step"], r[key]) for r in rows if key in r]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=key.replace("_", " "))
    ax.set_xlabel("step")
    ax.set_ylabel("MDLM loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
