"""MDLM pre-training / SFT as a LightningModule (LLaDA's masked diffusion objective)."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch

from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.training.losses import mdlm_loss


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """LR multiplier: linear warm-up, then cosine decay to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


class MDLMModule(L.LightningModule):
    """Train any :class:`DiffusionLM` on noised SFT batches from :class:`~dllm_lab.data.SFTCollator`.

    The model object is built by the entry point and passed in; ``run_config`` (a plain dict) is the
    resolved run configuration, saved in every checkpoint so a checkpoint describes itself.
    """

    def __init__(
        self,
        lm: DiffusionLM,
        lr: float = 1e-3,
        weight_decay: float = 0.1,
        betas: tuple[float, float] = (0.9, 0.95),
        warmup_steps: int = 100,
        total_steps: int = 1000,
        min_lr_ratio: float = 0.1,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.save_hyperparameters(ignore=["lm"], logger=False)  # the entry point logs the config itself
        self.lm = lm
        self.train()  # from_pretrained returns eval-mode modules; fine-tuning wants dropout active

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm.logits(input_ids)

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.lm.logits(batch["input_ids"])  # (B, N, V)
        return mdlm_loss(logits, batch["labels"], batch["loss_mask"], batch["p_mask"], batch["response_lengths"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"non-finite training loss at step {self.global_step}; lower algo.lr or enable "
                "gradient clipping (trainer.gradient_clip_val); the last checkpoint is kept"
            )
        tokens = batch["input_ids"].numel()
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        self.log("train/tokens", float(tokens), reduce_fx="sum")
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        decay, no_decay = [], []
        for name, param in self.lm.named_parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 or "norm" in name or "bias" in name else decay).append(param)
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": hp.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
            lr=hp.lr,
            betas=tuple(hp.betas),
        )
        schedule = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lambda s: warmup_cosine(s, hp.warmup_steps, hp.total_steps, hp.min_lr_ratio)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
