"""MDLM pre-training / SFT as a LightningModule (LLaDA's masked diffusion objective)."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.training.losses import mdlm_loss
from dllm_lab.training.optim import OptimSettings, build_optimizer
from dllm_lab.training.sharding import ShardedClipping


class MDLMModule(ShardedClipping, L.LightningModule):
    """Train any :class:`DiffusionLM` on noised SFT batches from :class:`~dllm_lab.data.SFTCollator`.

    The model object is built by the entry point and passed in; ``optim``: AdamW and its schedule;
    ``run_config`` (a plain dict) is the resolved run configuration, saved in every checkpoint so a
    checkpoint describes itself.
    """

    def __init__(
        self, lm: DiffusionLM, optim: OptimSettings | None = None, run_config: dict[str, Any] | None = None
    ) -> None:
        super().__init__()
        # plain containers only in checkpoints; the entry point logs the config itself
        self.save_hyperparameters({"run_config": run_config}, logger=False)
        self.lm = lm
        self.optim = optim or OptimSettings()
        self.train()  # from_pretrained returns eval-mode modules; fine-tuning wants dropout active

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.lm.logits(input_ids)

    def _loss(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        logits = self.lm.logits(batch["input_ids"])  # (B, N, V)
        return mdlm_loss(logits, batch["labels"], batch["loss_mask"], batch["p_mask"], batch["response_lengths"])

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss = self._loss(batch)
        if not torch.isfinite(loss):
            clip = self.trainer.gradient_clip_val if self._trainer is not None else None
            advice = (f"lower algo.lr (gradient clipping is on: trainer.gradient_clip_val={clip})" if clip else
                      "lower algo.lr or enable gradient clipping (trainer.gradient_clip_val=1.0)")
            raise FloatingPointError(f"non-finite training loss at step {self.global_step}; {advice}")
        tokens = batch["input_ids"].numel()
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/lr", self.optimizers().param_groups[0]["lr"])
        self.log("train/tokens", float(tokens), reduce_fx="sum")
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val/loss", self._loss(batch), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        return build_optimizer(self.lm.named_parameters(), self.optim)
