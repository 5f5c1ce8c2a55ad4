"""``TrainerSettings``: the ``trainer`` group, typed; builds the Lightning ``Trainer`` of every run."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import ProgressBar

from dllm_lab.errors import ConfigError
from dllm_lab.training.progress import LiveProgress


@dataclass(frozen=True)
class TrainerSettings:
    """Lightning Trainer options (``configs/trainer/*.yaml``) plus two of ours.

    checkpoint_every_n_steps: the checkpoint interval (read by the checkpoint callback's config);
    num_threads: ``torch.set_num_threads`` for the run (``None`` keeps torch's default).
    """

    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: Any = "auto"
    precision: Any = "32-true"
    max_steps: int = 1000
    val_check_interval: Any = 200
    limit_val_batches: Any = None
    gradient_clip_val: float | None = 1.0
    accumulate_grad_batches: int = 1
    log_every_n_steps: int = 10
    checkpoint_every_n_steps: int = 500
    fast_dev_run: Any = False
    deterministic: Any = False
    num_threads: int | None = None

    def __post_init__(self) -> None:
        if self.max_steps <= 0:
            raise ConfigError(f"trainer.max_steps={self.max_steps} must be positive")
        if self.num_threads is not None and self.num_threads < 1:
            raise ConfigError(f"trainer.num_threads={self.num_threads} must be >= 1, or null for torch's default")

    def build(
        self, logger: Any, callbacks: list, default_root_dir: str, manual_optimization: bool = False
    ) -> L.Trainer:
        """The Trainer, with the live progress display unless ``callbacks`` bring a progress bar.
        ``manual_optimization`` (RL modules: one training step is one rollout and its updates) leaves out
        ``gradient_clip_val``, which Lightning refuses for manually optimised modules (they clip per update
        themselves), and logs every rollout, whatever ``log_every_n_steps`` and ``max_steps`` are."""
        if self.num_threads:
            torch.set_num_threads(int(self.num_threads))
        if not any(isinstance(cb, ProgressBar) for cb in callbacks):
            callbacks = [*callbacks, LiveProgress()]
        return L.Trainer(
            accelerator=self.accelerator,
            devices=self.devices,
            num_nodes=self.num_nodes,
            strategy=self.strategy,
            precision=self.precision,
            max_steps=self.max_steps,
            val_check_interval=self.val_check_interval,
            check_val_every_n_epoch=None,
            limit_val_batches=self.limit_val_batches,
            gradient_clip_val=None if manual_optimization else self.gradient_clip_val,
            accumulate_grad_batches=self.accumulate_grad_batches,
            log_every_n_steps=1 if manual_optimization else self.log_every_n_steps,
            fast_dev_run=self.fast_dev_run,
            deterministic=self.deterministic,
            logger=logger if logger is not None else False,
            callbacks=callbacks,
            default_root_dir=default_root_dir,
            use_distributed_sampler=False,  # the DataModule shards by rank itself, without padding duplicates
            enable_model_summary=False,
        )
