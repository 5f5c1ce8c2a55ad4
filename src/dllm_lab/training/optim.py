"""One optimizer/scheduler builder for every training module: AdamW with linear warm-up and cosine decay."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import torch

from dllm_lab.errors import ConfigError


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_ratio: float = 0.1) -> float:
    """LR multiplier: linear warm-up, then cosine decay to ``min_ratio`` at ``total_steps``."""
    if step < warmup_steps:
        return (step + 1) / max(1, warmup_steps)
    progress = min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


@dataclass(frozen=True)
class OptimSettings:
    """AdamW and its schedule (``algo.lr`` ... and ``trainer.max_steps``).

    total_steps: optimizer steps of the run (the cosine ends there); min_lr_ratio: the LR at the end as
    a share of the peak (1.0 = constant after warm-up). decay_norms_and_biases: apply weight decay to
    every parameter (the GRPO presets) instead of leaving 1-d parameters, norms and biases out (SFT).
    """

    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.95)
    warmup_steps: int = 100
    total_steps: int = 1000
    min_lr_ratio: float = 0.1
    decay_norms_and_biases: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))

        def need(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"{key}: {message}")

        need(self.lr > 0, "algo.lr", f"{self.lr} must be positive")
        need(self.weight_decay >= 0, "algo.weight_decay", f"{self.weight_decay} must be >= 0")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "algo.betas",
             f"{list(self.betas)} must be two numbers in [0, 1)")
        need(self.warmup_steps >= 0, "algo.warmup_steps", f"{self.warmup_steps} must be >= 0")
        need(self.total_steps > 0, "trainer.max_steps", f"{self.total_steps} must be positive")
        need(0 <= self.min_lr_ratio <= 1, "algo.min_lr_ratio", f"{self.min_lr_ratio} must be in [0, 1]")


def build_optimizer(
    named_parameters: Iterable[tuple[str, torch.nn.Parameter]], settings: OptimSettings
) -> dict[str, Any]:
    """``configure_optimizers``' return value: AdamW over the trainable parameters and a per-step
    :func:`warmup_cosine` schedule."""
    decay, no_decay = [], []
    for name, param in named_parameters:
        if not param.requires_grad:
            continue
        exempt = not settings.decay_norms_and_biases and (param.ndim < 2 or "norm" in name or "bias" in name)
        (no_decay if exempt else decay).append(param)
    groups = [{"params": decay, "weight_decay": settings.weight_decay}]
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, betas=settings.betas)
    s = settings
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: warmup_cosine(step, s.warmup_steps, s.total_steps, s.min_lr_ratio)
    )
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}
