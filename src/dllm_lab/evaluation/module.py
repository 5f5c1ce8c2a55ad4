"""``EvalModule``: decode each task's prompts, score them and log accuracy, NFE and tokens/s."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torchmetrics import SumMetric

from dllm_lab.decoding import DecodeConfig, SpeedMeter, decode
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.tasks import get_task

_COUNTERS = ("correct", "parsed", "samples", "nfe", "tokens", "wall_s")


class EvalModule(L.LightningModule):
    """Test/predict loop over the DataModule's per-task prompt loaders (one loader per task).

    Counters are sum-reduced torchmetrics, so accuracy under DDP equals the single-process value.
    Per-sample predictions (prompt, output, parsed answer, correct, NFE) are gathered to rank 0 in
    ``self.predictions``; the caller logs them as artifacts.
    """

    def __init__(self, lm: DiffusionLM, decode_config: DecodeConfig, task_names: list[str], prompt_style: str) -> None:
        super().__init__()
        self.lm = lm
        self.decode_config = decode_config
        self.task_names = list(task_names)
        self.tasks = {n: get_task(n, prompt_style=prompt_style) for n in self.task_names}
        self.counters = torch.nn.ModuleDict(
            {n: torch.nn.ModuleDict({c: SumMetric() for c in _COUNTERS}) for n in self.task_names}
        )
        self.predictions: list[dict[str, Any]] = []
        self.results: dict[str, dict[str, float]] = {}

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        name = batch["tasks"][0]
        task = self.tasks[name]
        speed = SpeedMeter()
        out = decode(self.lm, batch["prompt_ids"], self.decode_config, [speed], batch["attention_mask"])
        answers = [task.parse_answer(text) for text in out.texts]
        correct = [task.answer_is_correct(a, ex) for a, ex in zip(answers, batch["examples"], strict=True)]
        c = self.counters[name]
        c["correct"].update(float(sum(correct)))
        c["parsed"].update(float(sum(a is not None for a in answers)))
        c["samples"].update(float(len(correct)))
        c["nfe"].update(float(out.nfe * len(correct)))
        c["tokens"].update(float(out.sequences.numel()))
        c["wall_s"].update(speed_wall(out))
        for prompt, text, answer, ok in zip(batch["prompts"], out.texts, answers, correct, strict=True):
            self.predictions.append(
                {"task": name, "prompt": prompt, "output": text, "parsed": None if answer is None else str(answer),
                 "correct": bool(ok), "nfe": out.nfe}
            )

    predict_step = test_step

    def on_test_epoch_end(self) -> None:
        metrics: dict[str, float] = {}
        for name in self.task_names:
            totals = {k: float(m.compute()) for k, m in self.counters[name].items()}
            n = max(totals["samples"], 1.0)
            row = {
                "accuracy": totals["correct"] / n,
                "parse_rate": totals["parsed"] / n,
                "nfe": totals["nfe"] / n,
                "tokens_per_s": totals["tokens"] / totals["wall_s"] if totals["wall_s"] > 0 else 0.0,
                "samples": totals["samples"],
            }
            self.results[name] = row
            metrics.update({f"eval/{name}/{k}": v for k, v in row.items()})
            for m in self.counters[name].values():
                m.reset()
        self.log_dict(metrics, rank_zero_only=True)
        self.predictions = _gather(self.predictions)


def speed_wall(out) -> float:
    return float(out.extras["speed"]["wall_s"])


def _gather(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All ranks' rows on every rank (a no-op in a single process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return rows
    gathered: list[list[dict[str, Any]] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, rows)
    return [row for part in gathered for row in (part or [])]
