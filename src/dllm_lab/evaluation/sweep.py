"""Decoder sweeps: one parent MLflow run, one child run per (decoder preset, generation length).

Used by the decoding ablation (``dllm-eval experiment=decoding_ablation``). The model and the evaluation
sets are built once; every setting is a separate child run tagged ``mlflow.parentRunId`` so the MLflow UI
groups them. The parent gets the combined table (Markdown + JSON) and an accuracy-vs-NFE plot, which
are also written to ``sweep.output_dir`` (the experiment's folder).

Temporal signals (``temporal.enabled``, the default): every child logs its metrics and per-sample records
(``temporal/<task>.parquet``, also written under ``<paths.output_dir>/<decoder>-L<length>/``) but no plots.
With ``sweep.temporal_report: true`` (the temporal-voting study) the parent also gets the table shaped like
Table 1 of Time Is a Feature (``temporal_table.md``) and the temporal plots over every setting
(``plots/answer_timeline.png``, ``plots/tse_distribution.png``, ``plots/temporal_accuracy.png``), written to
``sweep.output_dir`` as well.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lightning.pytorch.utilities import rank_zero_only

from dllm_lab.data import TaskDataModule
from dllm_lab.decoding import DecodeCallback, DecodeConfig
from dllm_lab.evaluation.evaluate import evaluate_decoder
from dllm_lab.evaluation.report import temporal_table
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.temporal import TEMPORAL_TAG, TemporalSettings, read_records
from dllm_lab.tracking import flatten, log_file, log_table, log_text, set_tag
from dllm_lab.training.trainer import TrainerSettings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SweepSetting:
    """One (decoder preset, generation length): the preset's values and their validated config."""

    name: str
    gen_length: int
    values: dict[str, Any]
    decoder: DecodeConfig


@dataclass(frozen=True)
class SweepSettings:
    """The ``sweep`` block: every setting (validated before any is decoded), where the combined outputs
    go (``None``: MLflow only), and whether to add the temporal-voting report."""

    settings: tuple[SweepSetting, ...]
    output_dir: Path | None = None
    temporal_report: bool = False


def sweep_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per (decoder, L, task) with accuracy, NFE and tokens/s."""
    lines = ["| decoder | L | task | accuracy | NFE | tokens/s |", "|---|---:|---|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['decoder']} | {r['gen_length']} | {r['task']} | {r['accuracy']:.3f} | "
                     f"{r['nfe']:.1f} | {r['tokens_per_s']:.0f} |")
    return "\n".join(lines)


def summary_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per (decoder, L) with each task's accuracy, their mean, and the mean NFE and tokens/s."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    settings: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in rows:
        settings.setdefault((r["decoder"], r["gen_length"]), {})[r["task"]] = r
    lines = ["| decoder | L | " + " | ".join(tasks) + " | mean accuracy | NFE | tokens/s |",
             "|---|---:|" + "---:|" * (len(tasks) + 3)]
    for (decoder, gen_length), by_task in settings.items():
        cells = [f"{by_task[t]['accuracy']:.3f}" if t in by_task else "-" for t in tasks]
        acc, nfe, speed = (sum(r[k] for r in by_task.values()) / len(by_task)
                           for k in ("accuracy", "nfe", "tokens_per_s"))
        lines.append(f"| {decoder} | {gen_length} | " + " | ".join(cells) + f" | {acc:.3f} | {nfe:.1f} | {speed:.0f} |")
    return "\n".join(lines)


def results_markdown(rows: list[dict[str, Any]]) -> str:
    """``results.md``: the per-setting summary, then every (decoder, L, task) row."""
    return f"## Summary\n\n{summary_table(rows)}\n\n## Per task\n\n{sweep_table(rows)}\n"


def plot_accuracy_vs_nfe(rows: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = list(dict.fromkeys(r["task"] for r in rows))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.6), squeeze=False)
    markers = {L: m for L, m in zip(sorted({r["gen_length"] for r in rows}), "os^D", strict=False)}
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in rows if r["task"] == task):
            ax.scatter(r["nfe"], r["accuracy"], marker=markers[r["gen_length"]], s=28)
            ax.annotate(r["decoder"], (r["nfe"], r["accuracy"]), fontsize=6, xytext=(2, 2), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_title(task)
        ax.set_xlabel("NFE per sample (log)")
        ax.set_ylabel("accuracy")
    handles = [plt.Line2D([], [], marker=m, linestyle="", color="gray", label=f"L={L}") for L, m in markers.items()]
    fig.legend(handles=handles, loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def run_sweep(
    sweep: SweepSettings, lm: DiffusionLM, datamodule: TaskDataModule, trainer: TrainerSettings, output_dir: Path,
    parent=None, make_child_logger: Callable[..., Any] | None = None, temporal: TemporalSettings | None = None,
    callbacks: Sequence[DecodeCallback] = (),
) -> dict[str, Any]:
    """Evaluate every setting of ``sweep``; ``make_child_logger(run_name, tags)`` gives each its child run
    of ``parent``."""
    # children log their records; plots are drawn once, over every setting, by the temporal report
    child_temporal = None if temporal is None else dataclasses.replace(temporal, plots=False)
    rows: list[dict[str, Any]] = []
    records_dirs: dict[tuple[str, int], Path] = {}
    for setting in sweep.settings:
        name, gen_length = setting.name, setting.gen_length
        child = None
        if parent is not None and make_child_logger is not None:
            child = make_child_logger(f"{name}-L{gen_length}", {"mlflow.parentRunId": parent.run_id, "decoder": name,
                                                                "gen_length": gen_length})
            if rank_zero_only.rank == 0:
                child.log_hyperparams({f"decoder.{k}": v for k, v in flatten(setting.values).items()})
        records_dirs[name, gen_length] = Path(output_dir) / f"{name}-L{gen_length}"
        results, is_zero = evaluate_decoder(
            lm, datamodule, setting.decoder, trainer, child, output_dir, child_temporal,
            records_dirs[name, gen_length], callbacks,
        )
        if child is not None and is_zero:
            child.finalize("success")
        for task, r in results.items():
            rows.append({"decoder": name, "gen_length": gen_length, "task": task, **r})
        log.info("sweep: %s L=%d done", name, gen_length)
    table = results_markdown(rows)
    out_dir = sweep.output_dir
    result: dict[str, Any] = {"rows": rows, "table": table}
    if rank_zero_only.rank == 0:
        _write_outputs(rows, table, out_dir, parent)
        print("\n" + table)
        if temporal is not None and sweep.temporal_report:
            result["temporal_table"] = _write_temporal_report(rows, records_dirs, out_dir, parent, temporal)
            print("\n" + result["temporal_table"])
    return result


def _write_temporal_report(
    rows: list[dict[str, Any]], records_dirs: dict[tuple[str, int], Path], out_dir: Path | None, parent,
    temporal: TemporalSettings,
) -> str:
    """Table 1 of Time Is a Feature over every setting, and the temporal plots, to ``out_dir`` and ``parent``."""
    import tempfile

    import pandas as pd

    from dllm_lab.temporal.plots import plot_all

    table = temporal_table(rows) + "\n"
    frames = []
    for (name, _), folder in records_dirs.items():
        files = sorted((folder / "temporal").glob("*.parquet"))
        if files:
            frames.append(read_records(files).assign(decoder=name))
    with tempfile.TemporaryDirectory() as tmp:
        target = out_dir or Path(tmp)
        target.mkdir(parents=True, exist_ok=True)
        (target / "temporal_table.md").write_text(table)
        plots = plot_all(pd.concat(frames, ignore_index=True), rows, target / "plots", temporal.timeline_samples) \
            if frames else []
        if parent is not None:
            log_text(parent, table, "temporal_table.md")
            for path in plots:
                log_file(parent, path, "plots")
            set_tag(parent, TEMPORAL_TAG, "true")
    return table


def _write_outputs(rows: list[dict[str, Any]], table: str, out_dir: Path | None, parent) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        plot = Path(tmp) / "accuracy_vs_nfe.png"
        plot_accuracy_vs_nfe(rows, plot)
        if parent is not None:
            log_text(parent, table, "results.md")
            log_table(parent, rows, "results.json")
            log_file(parent, plot)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "results.md").write_text(table)
            (out_dir / "results.json").write_text(json.dumps(rows, indent=1))
            (out_dir / "accuracy_vs_nfe.png").write_bytes(plot.read_bytes())
