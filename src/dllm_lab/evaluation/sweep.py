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
from dllm_lab.evaluation.figures import plot_accuracy_vs_nfe, plot_differences
from dllm_lab.evaluation.report import temporal_intervals_table, temporal_table
from dllm_lab.evaluation.stats import Interval, paired_bootstrap
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.temporal import TEMPORAL_TAG, TemporalSettings, read_records
from dllm_lab.temporal.plots import plot_all, run_name_of
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
    go (``None``: MLflow only), whether to add the temporal-voting report, and the ``baseline`` decoder that
    every setting is compared with on the same problems (a paired bootstrap 95% interval), at the same
    length when it ran there, else at its first length."""

    settings: tuple[SweepSetting, ...]
    output_dir: Path | None = None
    temporal_report: bool = False
    baseline: str | None = None


def _delta_cell(r: dict[str, Any], key: str = "delta") -> str:
    if f"{key}_low" not in r:
        return "-"
    return Interval(r[key], r[f"{key}_low"], r[f"{key}_high"]).cell()


def sweep_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per (decoder, L, task) with accuracy, its difference from the baseline (when the
    sweep has one), NFE and tokens/s."""
    paired = any("delta_low" in r for r in rows)
    head = "| decoder | L | task | accuracy |" + (f" vs {rows[0]['baseline']} [95% CI] |" if paired else "")
    lines = [head + " NFE | tokens/s |", "|---|---:|---|---:|" + ("---:|" if paired else "") + "---:|---:|"]
    for r in rows:
        delta = f" {_delta_cell(r)} |" if paired else ""
        lines.append(f"| {r['decoder']} | {r['gen_length']} | {r['task']} | {r['accuracy']:.3f} |{delta} "
                     f"{r['nfe']:.1f} | {r['tokens_per_s']:.0f} |")
    return "\n".join(lines)


def summary_table(rows: list[dict[str, Any]], means: dict[tuple[str, int], dict[str, float]] | None = None) -> str:
    """Markdown: one line per (decoder, L) with each task's accuracy, their mean (and its difference from the
    baseline, ``means``), and the mean NFE and tokens/s."""
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    settings: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in rows:
        settings.setdefault((r["decoder"], r["gen_length"]), {})[r["task"]] = r
    paired = bool(means)
    baseline = f" vs {rows[0]['baseline']} [95% CI] |" if paired else ""
    lines = ["| decoder | L | " + " | ".join(tasks) + f" | mean accuracy |{baseline} NFE | tokens/s |",
             "|---|---:|" + "---:|" * (len(tasks) + 3 + paired)]
    for (decoder, gen_length), by_task in settings.items():
        cells = [f"{by_task[t]['accuracy']:.3f}" if t in by_task else "-" for t in tasks]
        acc, nfe, speed = (sum(r[k] for r in by_task.values()) / len(by_task)
                           for k in ("accuracy", "nfe", "tokens_per_s"))
        delta = f" {_delta_cell((means or {}).get((decoder, gen_length), {}))} |" if paired else ""
        lines.append(f"| {decoder} | {gen_length} | " + " | ".join(cells) + f" | {acc:.3f} |{delta} {nfe:.1f} | "
                     f"{speed:.0f} |")
    return "\n".join(lines)


def results_markdown(rows: list[dict[str, Any]], means: dict[tuple[str, int], dict[str, float]] | None = None) -> str:
    """``results.md``: the per-setting summary, then every (decoder, L, task) row."""
    note = ""
    if means:
        note = (f"\n\nDifferences are against `{rows[0]['baseline']}` on the same problems (at the same L when it ran "
                "there, else at its first L): mean and a paired bootstrap 95% interval (10,000 resamples of the "
                "problems; the mean column pools every task's problems). \"not resolved\": the interval covers 0.")
    return f"## Summary\n\n{summary_table(rows, means)}{note}\n\n## Per task\n\n{sweep_table(rows)}\n"


def paired_differences(
    rows: list[dict[str, Any]], records_dirs: dict[tuple[str, int], Path], baseline: str
) -> dict[tuple[str, int], dict[str, float]]:
    """Add ``delta``, ``delta_low``, ``delta_high`` (accuracy minus the baseline's on the same problems) to
    every row, from the settings' ``predictions/<task>.jsonl``; return the same for each setting's mean over
    tasks (the problems of every task pooled)."""
    lengths = [L for (name, L) in records_dirs if name == baseline]
    correct = {key: {} for key in records_dirs}
    for key, folder in records_dirs.items():
        for path in sorted((folder / "predictions").glob("*.jsonl")):
            lines = [json.loads(line) for line in path.read_text().splitlines() if line]
            correct[key][path.stem] = {p["sample_id"]: float(p["correct"]) for p in lines}
    means = {}
    for key in records_dirs:
        base = (baseline, key[1]) if key[1] in lengths else (baseline, lengths[0])
        pooled_a, pooled_b = [], []
        for r in rows:
            if (r["decoder"], r["gen_length"]) != key:
                continue
            r["baseline"] = baseline
            mine, theirs = correct[key].get(r["task"], {}), correct[base].get(r["task"], {})
            ids = sorted(set(mine) & set(theirs))
            if not ids:
                continue
            a, b = [mine[i] for i in ids], [theirs[i] for i in ids]
            interval = paired_bootstrap(a, b)
            r.update(delta=interval.estimate, delta_low=interval.low, delta_high=interval.high)
            pooled_a += a
            pooled_b += b
        if pooled_a:
            interval = paired_bootstrap(pooled_a, pooled_b)
            means[key] = {"delta": interval.estimate, "delta_low": interval.low, "delta_high": interval.high}
    return means


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
                                                                "preset.decoder": name, "gen_length": gen_length})
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
    means = None
    if sweep.baseline is not None and rank_zero_only.rank == 0:
        means = paired_differences(rows, records_dirs, sweep.baseline)
    table = results_markdown(rows, means)
    out_dir = sweep.output_dir
    result: dict[str, Any] = {"rows": rows, "table": table}
    if rank_zero_only.rank == 0:
        _write_outputs(rows, table, out_dir, parent)
        print("\n" + table)
        if temporal is not None and sweep.temporal_report:
            result["temporal_table"] = _write_temporal_report(rows, records_dirs, out_dir, parent, temporal)
            print("\n" + result["temporal_table"])
        _write_dashboard(parent, out_dir)
    return result


def _write_dashboard(parent, out_dir: Path | None) -> None:
    """The sweep's dashboard (:mod:`dllm_lab.evaluation.dashboard`), built from its child runs as
    ``dllm-report --parent <run>`` would, logged to the parent run and written to ``out_dir``."""
    from dllm_lab.evaluation.dashboard import study_dashboard

    tracking_uri = getattr(parent, "_tracking_uri", None)
    run_id = getattr(parent, "run_id", None)
    if not tracking_uri or not run_id:
        log.info("sweep: no MLflow parent run (logger=%s), so no dashboard; the tables and PNGs are written",
                 type(parent).__name__ if parent is not None else "none")
        return
    study_dashboard(tracking_uri, out_dir, _sweep_name(parent, out_dir) or "sweep", parent=run_id)


def _write_temporal_report(
    rows: list[dict[str, Any]], records_dirs: dict[tuple[str, int], Path], out_dir: Path | None, parent,
    temporal: TemporalSettings,
) -> str:
    """Table 1 of Time Is a Feature over every setting, and the temporal plots, to ``out_dir`` and ``parent``."""
    import tempfile

    import pandas as pd

    frames = []
    for (name, _), folder in records_dirs.items():
        files = sorted((folder / "temporal").glob("*.parquet"))
        if files:
            frames.append(read_records(files).assign(decoder=name))
    records = pd.concat(frames, ignore_index=True) if frames else None
    table = temporal_table(rows) + "\n"
    if records is not None:
        table += ("\nDifferences on the same samples, with a bootstrap 95% interval (10,000 resamples; TCV: paired "
                  "against the final-step answer; TSE: wrong minus correct samples, resampled apart). \"not "
                  "resolved\": the interval covers 0.\n\n" + temporal_intervals_table(records) + "\n")
    with tempfile.TemporaryDirectory() as tmp:
        target = out_dir or Path(tmp)
        target.mkdir(parents=True, exist_ok=True)
        (target / "temporal_table.md").write_text(table)
        plots = [] if records is None else plot_all(records, rows, target / "plots", temporal.timeline_samples,
                                                    run=_sweep_name(parent, out_dir))
        if parent is not None:
            log_text(parent, table, "temporal_table.md")
            for path in plots:
                log_file(parent, path, "plots")
            set_tag(parent, TEMPORAL_TAG, "true")
    return table


def _sweep_name(parent, out_dir: Path | None) -> str | None:
    """What the sweep's figures are titled by: the parent run's name, else the output folder's (the study)."""
    return run_name_of(parent) or (out_dir.name if out_dir is not None else None)


def _write_outputs(rows: list[dict[str, Any]], table: str, out_dir: Path | None, parent) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run = _sweep_name(parent, out_dir)
        plots = [plot_accuracy_vs_nfe(rows, Path(tmp) / "accuracy_vs_nfe.png", run)]
        if any("delta_low" in r for r in rows):
            plots.append(plot_differences(rows, Path(tmp) / "difference_vs_baseline.png", run=run))
        if parent is not None:
            log_text(parent, table, "results.md")
            log_table(parent, rows, "results.json")
            for path in plots:
                log_file(parent, path)
        if out_dir is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "results.md").write_text(table)
            (out_dir / "results.json").write_text(json.dumps(rows, indent=1))
            for path in plots:
                (out_dir / path.name).write_bytes(path.read_bytes())
