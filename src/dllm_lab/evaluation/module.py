"""``EvalModule``: decode each task's prompts, score them and log accuracy, NFE and tokens/s."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch

from dllm_lab.decoding import DecodeConfig, SpeedMeter, decode
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.tasks import get_task

_COUNTERS = ("correct", "parsed", "samples", "nfe", "tokens", "wall_s")


class EvalModule(L.LightningModule):
    """Test/predict loop over the DataModule's per-task prompt loaders (one loader per task).

    Counters are sums all-reduced across ranks once per epoch, and the DataModule shards the prompts
    without padding duplicates, so accuracy under DDP equals the single-process value.
    Per-sample predictions (prompt, output, parsed answer, correct, NFE) are gathered from all ranks
    and logged by rank 0 as MLflow artifacts together with the results table. Logging happens here,
    not in the caller, so it also works under ``ddp_spawn`` where the caller's module stays empty.
    """

    def __init__(self, lm: DiffusionLM, decode_config: DecodeConfig, task_names: list[str], prompt_style: str) -> None:
        super().__init__()
        self.lm = lm
        self.decode_config = decode_config
        self.task_names = list(task_names)
        self.tasks = {n: get_task(n, prompt_style=prompt_style) for n in self.task_names}
        self.counters: dict[str, torch.Tensor] = {}
        self.predictions: list[dict[str, Any]] = []
        self.results: dict[str, dict[str, float]] = {}

    def on_test_epoch_start(self) -> None:
        # Per task, the sums in _COUNTERS order, all-reduced across ranks at epoch end. Created here, in
        # each process: tensors made in __init__ would be shared memory between ddp_spawn workers.
        self.counters = {n: torch.zeros(len(_COUNTERS), dtype=torch.float64) for n in self.task_names}
        self.predictions = []

    on_predict_epoch_start = on_test_epoch_start

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        name = batch["tasks"][0]
        task = self.tasks[name]
        speed = SpeedMeter()
        out = decode(self.lm, batch["prompt_ids"], self.decode_config, [speed], batch["attention_mask"])
        answers = [task.parse_answer(text) for text in out.texts]
        correct = [task.answer_is_correct(a, ex) for a, ex in zip(answers, batch["examples"], strict=True)]
        self.counters[name] += torch.tensor(
            [sum(correct), sum(a is not None for a in answers), len(correct), float(out.nfe_per_sample.sum()),
             out.sequences.numel(), out.extras["speed"]["wall_s"]],
            dtype=torch.float64,
        )
        rows = zip(batch["prompts"], out.texts, answers, correct, out.nfe_per_sample.tolist(), strict=True)
        for prompt, text, answer, ok, nfe in rows:
            self.predictions.append(
                {"task": name, "prompt": prompt, "output": text, "parsed": None if answer is None else str(answer),
                 "correct": bool(ok), "nfe": int(nfe)}
            )

    predict_step = test_step

    def on_test_epoch_end(self) -> None:
        metrics: dict[str, float] = {}
        for name in self.task_names:
            totals = dict(zip(_COUNTERS, _all_reduce_sum(self.counters[name]).tolist(), strict=True))
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
        self.log_dict(metrics, rank_zero_only=True)
        self.predictions = _gather(self.predictions)
        if self.trainer.is_global_zero and self.logger is not None and hasattr(self.logger, "run_id"):
            self.log_artifacts(self.logger)

    def log_artifacts(self, logger) -> None:
        """The results table (``results.md``, ``results.json``) and per-task predictions (jsonl)."""
        from dllm_lab.evaluation.report import format_table
        from dllm_lab.tracking import log_table, log_text

        log_text(logger, format_table(self.results) + "\n", "results.md")
        log_table(logger, [{"task": t, **r} for t, r in self.results.items()], "results.json")
        for name in self.task_names:
            rows = [p for p in self.predictions if p["task"] == name]
            log_table(logger, rows, f"predictions/{name}.jsonl")


def _all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum over ranks (gloo and NCCL both take a float64 tensor on the right device)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return values
    device = "cuda" if torch.distributed.get_backend() == "nccl" else "cpu"
    reduced = values.to(device)
    torch.distributed.all_reduce(reduced)
    return reduced.cpu()


def _gather(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All ranks' rows on every rank (a no-op in a single process)."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return rows
    gathered: list[list[dict[str, Any]] | None] = [None] * torch.distributed.get_world_size()
    torch.distributed.all_gather_object(gathered, rows)
    return [row for part in gathered for row in (part or [])]
