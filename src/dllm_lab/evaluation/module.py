"""``EvalModule``: decode each task's prompts, score them and log accuracy, NFE and tokens/s, and the
temporal signals of decoding (TCV, TSE, EverPass; Time Is a Feature, docs/methods.md "Temporal signals")."""

from __future__ import annotations

import logging
import math
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch

from dllm_lab.decoding import DecodeCallback, DecodeConfig, SpeedMeter, decode
from dllm_lab.decoding.infill import trace_records
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.tasks import get_task
from dllm_lab.temporal import (
    TEMPORAL_TAG,
    TemporalCallback,
    TemporalSettings,
    temporal_metric_collection,
    temporal_records,
    write_records,
)
from dllm_lab.tracking import safe_metric_name, set_tag
from dllm_lab.training.progress import decode_progress

log = logging.getLogger(__name__)

_COUNTERS = ("correct", "parsed", "samples", "nfe", "tokens", "wall_s", "answer_ll", "reasoning_tokens")


class EvalModule(L.LightningModule):
    """Test/predict loop over the DataModule's per-task prompt loaders (one loader per task).

    Counters are sums all-reduced across ranks once per epoch, and the DataModule shards the prompts
    without padding duplicates, so accuracy under DDP equals the single-process value.
    Per-sample predictions (prompt, output, parsed answer, correct, NFE) are gathered from all ranks
    and logged by rank 0 as MLflow artifacts together with the results table. Logging happens here,
    not in the caller, so it also works under ``ddp_spawn`` where the caller's module stays empty.

    With ``temporal`` settings, a :class:`~dllm_lab.temporal.TemporalCallback` rides along every decode (no
    extra forward pass): per task, the torchmetrics of ``dllm_lab.temporal`` give ``tcv_<w>_accuracy``,
    ``everpass``, ``correct_then_wrong``, ``answer_changes`` and ``tse_*`` (sum states, synced across
    ranks), and per-sample records go to ``temporal/<task>.parquet`` and plots to ``plots/*.png``, written
    under ``output_dir`` and logged as artifacts. ``sample_id`` is the index in the task's eval set.

    ``callbacks``: the user's decoding callbacks (``decode_callbacks.*`` in the config), added to every
    decode; a callback whose ``output.extras[name]`` is a list with one JSON-able value per sample gets
    that value written into each sample's prediction row under its ``name``.

    ``prefix`` names the metrics (``<prefix>/<task>/accuracy``) and, when it is not ``eval``, the artifact
    folder (``<prefix>/predictions/<task>.jsonl``): a second decoder of the same run (``eval_decoders``).
    """

    def __init__(
        self, lm: DiffusionLM, decode_config: DecodeConfig, task_names: list[str], prompt_style: str,
        temporal: TemporalSettings | None = None, output_dir: str | Path | None = None,
        callbacks: Sequence[DecodeCallback] = (), prefix: str = "eval",
    ) -> None:
        super().__init__()
        self.prefix = prefix
        self.lm = lm
        self.decode_config = decode_config
        self.task_names = list(task_names)
        self.tasks = {n: get_task(n, prompt_style=prompt_style) for n in self.task_names}
        self.temporal = temporal
        self.user_callbacks = list(callbacks)
        self.output_dir = None if output_dir is None else Path(output_dir)
        self.counters: dict[str, torch.Tensor] = {}
        self.predictions: list[dict[str, Any]] = []
        self.records: list[dict[str, Any]] = []
        self.traces: list[dict[str, Any]] = []  # posterior decodes: reasoning given the gold answer
        self.temporal_metrics: dict[str, Any] = {}  # a plain dict: not registered as submodules
        self.seen: dict[str, int] = {}
        self.results: dict[str, dict[str, float]] = {}

    def on_test_epoch_start(self) -> None:
        # Per task, the sums in _COUNTERS order, all-reduced across ranks at epoch end. Created here, in
        # each process: tensors made in __init__ would be shared memory between ddp_spawn workers. The
        # temporal torchmetrics likewise, on this rank's device (NCCL syncs CUDA tensors only).
        self.counters = {n: torch.zeros(len(_COUNTERS), dtype=torch.float64) for n in self.task_names}
        self.predictions, self.records, self.traces = [], [], []
        self.seen = dict.fromkeys(self.task_names, 0)
        self.temporal_metrics = {}
        if self.temporal is not None:
            self.temporal_metrics = {n: temporal_metric_collection(t.is_equivalent, self.temporal).to(self.device)
                                     for n, t in self.tasks.items()}

    on_predict_epoch_start = on_test_epoch_start

    def test_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> None:
        name = batch["tasks"][0]
        task = self.tasks[name]
        speed = SpeedMeter()
        callbacks: list[DecodeCallback] = [speed, *self.user_callbacks, *decode_progress(self)]
        if self.temporal is not None:
            callbacks.append(TemporalCallback(self.lm, task, batch["examples"], self.temporal))
        gold = [task.gold_answer_text(e) for e in batch["examples"]] if self.decode_config.posterior else None
        out = decode(self.lm, batch["prompt_ids"], self.decode_config, callbacks, batch["attention_mask"], gold)
        ids = self._sample_ids(name, len(out.texts))
        traces = []
        if gold is not None:  # p(r | c, a*): the traces, each with its answer log-likelihood
            traces = trace_records(self.lm, self.decode_config, out, batch["attention_mask"], gold)
            self.traces += [{"task": name, "sample_id": sid, "prompt": prompt, **t}
                            for sid, prompt, t in zip(ids, batch["prompts"], traces, strict=True)]
        if self.temporal is not None:
            samples = out.extras["temporal"]
            self.temporal_metrics[name].update([s.answers for s in samples], [s.correct for s in samples])
            self.records += temporal_records(samples, name, ids, self.decode_config.gen_length)
            # the callback's last step is the parse of the output text: reuse it (math-verify is costly)
            answers = [s.final_answer for s in samples]
            correct = [bool(s.correct[-1]) for s in samples]
        else:
            answers = [task.parse_answer(text) for text in out.texts]
            correct = [task.answer_is_correct(a, ex) for a, ex in zip(answers, batch["examples"], strict=True)]
        self.counters[name] += torch.tensor(
            [sum(correct), sum(a is not None for a in answers), len(correct), float(out.nfe_per_sample.sum()),
             out.sequences.numel(), out.extras["speed"]["wall_s"], sum(t["answer_ll"] for t in traces),
             sum(t["reasoning_tokens"] for t in traces)],
            dtype=torch.float64,
        )
        per_sample = {cb.name: out.extras[cb.name] for cb in self.user_callbacks
                      if isinstance(out.extras.get(cb.name), list) and len(out.extras[cb.name]) == len(out.texts)}
        rows = zip(ids, batch["prompts"], out.texts, answers, correct, out.nfe_per_sample.tolist(), strict=True)
        for k, (sid, prompt, text, answer, ok, nfe) in enumerate(rows):
            self.predictions.append(
                {"task": name, "sample_id": sid, "prompt": prompt, "output": text,
                 "parsed": None if answer is None else str(answer), "correct": bool(ok), "nfe": int(nfe),
                 **{key: values[k] for key, values in per_sample.items()}}
            )

    predict_step = test_step

    def _sample_ids(self, name: str, n: int) -> list[int]:
        """Indices in the task's eval set: the DataModule strides it over ranks (rank, rank + world, ...)
        and each rank's loader yields its share in order."""
        world = self.trainer.world_size if self._trainer is not None else 1
        start, self.seen[name] = self.seen[name], self.seen[name] + n
        return [self.global_rank + (start + k) * world for k in range(n)]

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
            if self.decode_config.posterior:
                row["posterior_answer_ll"] = totals["answer_ll"] / n
                row["posterior_reasoning_tokens"] = totals["reasoning_tokens"] / n
            if name in self.temporal_metrics:  # every rank computes: the sync is a collective
                row.update(_temporal_values(self.temporal_metrics[name], totals["samples"] > 0))
            self.results[name] = row = _finite(row, name)
            metrics.update({safe_metric_name(f"{self.prefix}/{name}/{k}"): v for k, v in row.items()})
        self.log_dict(metrics, rank_zero_only=True)
        self.predictions = _gather(self.predictions)
        self.records = _gather(self.records)
        self.traces = _gather(self.traces)
        if not self.trainer.is_global_zero:
            return
        logger = self.logger if self.logger is not None and hasattr(self.logger, "run_id") else None
        if self.temporal is not None and (logger is not None or self.output_dir is not None):
            with tempfile.TemporaryDirectory() as tmp:
                self.write_temporal(self.output_dir or Path(tmp), logger)
        if self.traces and (logger is not None or self.output_dir is not None):
            with tempfile.TemporaryDirectory() as tmp:
                self.write_traces(self.output_dir or Path(tmp), logger)
        if self.output_dir is not None:
            self.write_predictions(self.output_dir)
        if logger is not None:
            self.log_artifacts(logger)

    def write_predictions(self, out_dir: Path) -> None:
        """``predictions/<task>.jsonl`` under ``out_dir``: one line per sample (what paired comparisons read)."""
        import json

        for name in self.task_names:
            rows = sorted((p for p in self.predictions if p["task"] == name), key=lambda p: p["sample_id"])
            path = out_dir / "predictions" / f"{name}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(r, default=str) + "\n" for r in rows))

    def write_traces(self, out_dir: Path, logger=None) -> None:
        """``posterior/<task>.parquet``: prompt, reasoning, gold answer, answer log-likelihood per sample, a
        dataset for posterior SFT; logged when ``logger``."""
        import pandas as pd

        from dllm_lab.tracking import log_file

        for name in self.task_names:
            rows = sorted((t for t in self.traces if t["task"] == name), key=lambda t: t["sample_id"])
            if rows:
                path = out_dir / "posterior" / f"{name}.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                pd.DataFrame(rows).to_parquet(path, index=False)
                if logger is not None:
                    log_file(logger, path, "posterior")

    def write_temporal(self, out_dir: Path, logger=None) -> None:
        """``temporal/<task>.parquet`` and ``plots/*.png`` under ``out_dir``, logged when ``logger``."""
        from dllm_lab.temporal.plots import plot_all, run_name_of
        from dllm_lab.tracking import log_file

        files = []
        for name in self.task_names:
            rows = [r for r in self.records if r["task"] == name]
            if rows:
                files.append(("temporal", write_records(rows, out_dir / "temporal" / f"{name}.parquet")))
        if self.temporal is not None and self.temporal.plots and self.records:
            import pandas as pd

            rows = [{"task": t, "gen_length": self.decode_config.gen_length, **r} for t, r in self.results.items()]
            frame = pd.DataFrame(self.records)
            for path in plot_all(frame, rows, out_dir / "plots", self.temporal.timeline_samples,
                                 run=run_name_of(logger), decoder=_decoder_label(self.decode_config, logger)):
                files.append(("plots", path))
        if logger is not None:
            for artifact_path, path in files:
                log_file(logger, path, artifact_path)
            set_tag(logger, TEMPORAL_TAG, "true")

    def log_artifacts(self, logger) -> None:
        """The results table (``results.md``, ``results.json``) and per-task predictions (jsonl)."""
        from dllm_lab.evaluation.report import format_table
        from dllm_lab.tracking import log_table, log_text

        folder = "" if self.prefix == "eval" else f"{self.prefix}/"
        log_text(logger, format_table(self.results) + "\n", f"{folder}results.md")
        log_table(logger, [{"task": t, **r} for t, r in self.results.items()], f"{folder}results.json")
        for name in self.task_names:
            rows = [p for p in self.predictions if p["task"] == name]
            log_table(logger, rows, f"{folder}predictions/{name}.jsonl")


def _decoder_label(config: DecodeConfig, logger=None) -> str:
    """The decoder as plot titles name it: its preset (the run's ``preset.decoder`` or ``decoder`` tag) and its
    length and steps, e.g. ``med (L=64, adaptive med)``, ``semi_ar (L=64, 64 steps)``."""
    tags = getattr(logger, "tags", None) or {}
    name = tags.get("preset.decoder") or tags.get("decoder")
    about = decoder_about(config)
    return f"{name} ({about})" if name else f"{config.scorer}, {config.schedule} ({about})"


def decoder_about(config: DecodeConfig, block: bool = False) -> str:
    """A decoder's length and steps, ``L=64, 64 steps`` or ``L=64, adaptive med`` (``block``: and its block)."""
    steps = f"adaptive {config.adaptive}" if config.total_steps is None else f"{config.total_steps} steps"
    blocks = f", block {config.block_length}" if block and config.block_length else ""
    return f"L={config.gen_length}, {steps}{blocks}"


def _temporal_values(metrics, any_samples: bool) -> dict[str, float]:
    """``compute()`` of a task's temporal metrics as floats (a rank without samples still joins the sync)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*was called before the ``update`` method.*")
        values = {k: float(v) for k, v in metrics.compute().items()}
    return values if any_samples else {}


def _finite(row: dict[str, float], task: str) -> dict[str, float]:
    """``row`` without NaN/inf values (a counted skip with a warning: NaN never reaches MLflow)."""
    bad = sorted(k for k, v in row.items() if not math.isfinite(v))
    if bad:
        log.warning("eval/%s: not logging non-finite %s", task, ", ".join(bad))
    return {k: v for k, v in row.items() if k not in bad}


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
