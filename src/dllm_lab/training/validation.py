"""What the trainers that decode share: task objects by name, and greedy accuracy on the held-out sets."""

from __future__ import annotations

from typing import Any

import lightning as L

from dllm_lab.decoding import DecodeConfig, decode
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.tasks import Task, get_task
from dllm_lab.training.progress import decode_progress


class TaskCache(dict):
    """Task objects by name, made on first use in the model's prompt style."""

    def __init__(self, lm: DiffusionLM) -> None:
        super().__init__()
        self.lm = lm

    def __missing__(self, name: str) -> Task:
        self[name] = task = get_task(name, model=self.lm)
        return task


def log_greedy_accuracy(module: L.LightningModule, batch: dict[str, Any], decoder: DecodeConfig,
                        tasks: TaskCache) -> None:
    """Decode a :class:`~dllm_lab.data.PromptCollator` batch of one task and log ``val/<task>/accuracy``."""
    name = batch["tasks"][0]
    out = decode(module.lm, batch["prompt_ids"], decoder, decode_progress(module), batch["attention_mask"])
    task = tasks[name]
    correct = [task.is_correct(c, e) for c, e in zip(out.texts, batch["examples"], strict=True)]
    module.log(f"val/{name}/accuracy", sum(correct) / max(1, len(correct)), batch_size=len(correct),
               sync_dist=True, add_dataloader_idx=False)
