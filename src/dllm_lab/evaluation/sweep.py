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
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lightning.pytorch.utilities import rank_zero_only

from dllm_lab.data import TaskDataModule
from dllm_lab.decoding import DecodeCallback, DecodeConfig
from dllm_lab.evaluation.evaluate import evaluate_decoder
from dllm_lab.evaluation.palette import preset_colors
from dllm_lab.evaluation.report import temporal_intervals_table, temporal_table
from dllm_lab.evaluation.stats import Interval, paired_bootstrap
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.temporal import TEMPORAL_TAG, TemporalSettings, read_records
from dllm_lab.temporal.plots import (
    MIN_WIDTH,
    figure_title,
    length_markers,
    new_figure,
    plot_all,
    run_name_of,
    save_figure,
    say,
)
from dllm_lab.tracking import flatten, log_file, log_table, log_text, set_tag
from dllm_lab.training.trainer import TrainerSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

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


def _length(r: dict[str, Any]) -> int | None:
    return None if r.get("gen_length") is None else int(r["gen_length"])


def differences_figure(rows: list[dict[str, Any]], label: Callable[[dict[str, Any]], str] | None = None,
                       baseline: str | None = None, run: str | None = None,
                       color_key: Callable[[dict[str, Any]], str] | None = None, study: str | None = None) -> Figure:
    """Each setting's accuracy difference from the baseline with its 95% interval, one panel per task: colour
    per decoder preset (``color_key(row)``, default the row's ``decoder``), marker per generation length,
    filled when the interval excludes 0 and open when it does not (not resolved). ``label`` names a row's
    setting on the y axis (default ``<decoder> L<gen_length>``); ``baseline`` the reference (default the rows'
    ``baseline``); ``run`` and ``study`` name the sweep's run or the study in the title."""
    from matplotlib.lines import Line2D
    from matplotlib.ticker import MaxNLocator

    rows = [r for r in rows if "delta_low" in r]
    baseline = baseline or (rows[0].get("baseline") if rows else None) or "the baseline"
    title = figure_title(f"Accuracy difference from {baseline} on the same problems (paired 95% CI)", run,
                         study=study)
    if not rows:
        fig, axes = new_figure(MIN_WIDTH, 3.0)
        say(axes[0][0], "no paired differences: the sweep has no baseline, or no problem in common with it")
        fig.suptitle(title, fontsize=10)
        return fig
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    label = label or (lambda r: f"{r['decoder']} L{r['gen_length']}")
    color_key = color_key or (lambda r: r["decoder"])
    labels = list(dict.fromkeys(label(r) for r in rows))
    colors = preset_colors(color_key(r) for r in rows)
    lengths = {_length(r) for r in rows} - {None}
    markers = length_markers(lengths)
    label_in = 0.075 * max(len(s) for s in labels)
    fig, axes = new_figure(3.1 * len(tasks) + label_in + 1.8, 0.27 * len(labels) + 2.0, 1, len(tasks), sharey=True)
    for ax, task in zip(axes[0], tasks, strict=True):
        for r in (r for r in rows if r["task"] == task):
            y = labels.index(label(r))
            resolved = r["delta_low"] > 0 or r["delta_high"] < 0
            color = colors[color_key(r)]
            ax.errorbar(r["delta"], y, xerr=[[r["delta"] - r["delta_low"]], [r["delta_high"] - r["delta"]]],
                        fmt=markers.get(_length(r), "o"), ms=5, color=color, mfc=color if resolved else "white",
                        mec=color, capsize=2, lw=1.2, label=f"{color_key(r)}|{task}")
        ax.axvline(0, color="black", lw=0.6)
        ax.set_title(task, fontsize=9)
        ax.set_xlabel(f"accuracy - {baseline}", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=5))
        ax.grid(axis="x", lw=0.3, alpha=0.5)
    axes[0][0].set_yticks(range(len(labels)), labels, fontsize=8)
    axes[0][0].set_ylim(len(labels) - 0.5, -0.5)
    handles = [Line2D([], [], marker="o", ls="", color="#555555", label="resolved\n(the interval excludes 0)"),
               Line2D([], [], marker="o", ls="", color="#555555", mfc="white", label="not resolved\n(it covers 0)")]
    if len(markers) > 1:
        handles += [Line2D([], [], marker=m, ls="", color="#555555", label=f"L={L}") for L, m in markers.items()]
    fig.legend(handles=handles, loc="outside right upper", fontsize=8, frameon=False, labelspacing=1.0)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_differences(rows: list[dict[str, Any]], path: Path, label: Callable[[dict[str, Any]], str] | None = None,
                     baseline: str | None = None, run: str | None = None,
                     color_key: Callable[[dict[str, Any]], str] | None = None, study: str | None = None) -> Path:
    """:func:`differences_figure` as a PNG at ``path``."""
    return save_figure(differences_figure(rows, label, baseline, run, color_key, study), path)


def _log2_ticks(ax, values: list[float]) -> None:
    """A log x axis over ``values`` with plain-number ticks at powers of two."""
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    lo, hi = min(values) / 1.3, max(values) * 1.3
    ticks = [2.0 ** k for k in range(math.floor(math.log2(lo)), math.ceil(math.log2(hi)) + 1) if lo <= 2.0 ** k <= hi]
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ax.xaxis.set_major_locator(FixedLocator(ticks or [min(values)]))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def accuracy_vs_nfe_figure(rows: list[dict[str, Any]], run: str | None = None) -> Figure:
    """One panel per task: each (decoder, length)'s accuracy against its NFE per sample, colour per decoder
    preset, marker per generation length. Points never carry text: the legend at the right is a table, one
    line per setting with its marker, mean NFE and accuracy per task. Points that coincide are drawn as rings
    around each other."""
    from matplotlib.lines import Line2D

    title = figure_title("Accuracy vs forward passes per sample (NFE)", run)
    if not rows:
        fig, axes = new_figure(MIN_WIDTH, 3.0)
        say(axes[0][0], "no results: the sweep decoded nothing")
        fig.suptitle(title, fontsize=10)
        return fig
    tasks = list(dict.fromkeys(r["task"] for r in rows))
    settings = list(dict.fromkeys((r["decoder"], int(r["gen_length"])) for r in rows))
    colors = preset_colors(d for d, _ in settings)
    markers = length_markers(L for _, L in settings)
    by_setting = {s: {r["task"]: r for r in rows if (r["decoder"], int(r["gen_length"])) == s} for s in settings}
    name_w = max(len("decoder"), *(len(d) for d, _ in settings))
    task_w = [max(5, len(t)) for t in tasks]
    header = f"{'decoder':<{name_w}} {'L':>4} {'NFE':>6}  " + " ".join(f"{t:>{w}}" for t, w in zip(tasks, task_w,
                                                                                                       strict=True))
    lines = []
    for (decoder, L), found in by_setting.items():
        nfe = sum(r["nfe"] for r in found.values()) / len(found)
        cells = [f"{found[t]['accuracy']:.3f}" if t in found else "-" for t in tasks]
        lines.append(f"{decoder:<{name_w}} {L:>4} {nfe:>6.1f}  " + " ".join(f"{c:>{w}}" for c, w in zip(
            cells, task_w, strict=True)))
    legend_in = 7 * 0.6 * len(header) / 72 + 0.8
    ncols = min(len(tasks), 3)
    nrows = math.ceil(len(tasks) / ncols)
    height = max(3.4 * nrows, 0.16 * (len(settings) + 3)) + 0.8
    fig, axes = new_figure(3.2 * ncols + legend_in, height, nrows, ncols)
    for k, ax in enumerate(axes.flat):
        if k >= len(tasks):
            ax.axis("off")
            continue
        task = tasks[k]
        points = [(s, by_setting[s][task]) for s in settings if task in by_setting[s]]
        seen: dict[tuple[float, float], int] = {}
        groups = [seen.setdefault((round(r["nfe"], 2), round(r["accuracy"], 4)), len(seen)) for _, r in points]
        for g in set(groups):  # coinciding points: the first drawn largest, the others inside it
            members = [i for i, gi in enumerate(groups) if gi == g]
            for rank, i in enumerate(members):
                (decoder, L), r = points[i]
                size = 34 * (len(members) - rank) ** 1.6
                ax.scatter(r["nfe"], r["accuracy"], s=size, marker=markers[L], color=colors[decoder],
                           edgecolors="#333333", linewidths=0.5, zorder=2 + rank, label=f"{decoder} L={L}")
        _log2_ticks(ax, [r["nfe"] for _, r in points])
        ax.set_title(task, fontsize=9)
        ax.set_xlabel("NFE per sample (log scale)", fontsize=8)
        ax.set_ylabel("accuracy", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(lw=0.3, alpha=0.5)
    handles = [Line2D([], [], ls="", marker="")]
    handles += [Line2D([], [], ls="", marker=markers[L], color=colors[d], mec="#333333", mew=0.5, ms=6)
                for d, L in settings]
    fig.legend(handles, [header, *lines], loc="outside right upper", prop={"family": "monospace", "size": 7},
               title="accuracy per task", title_fontsize=8, frameon=False, handlelength=1.2, labelspacing=0.45)
    fig.suptitle(title, fontsize=10)
    return fig


def plot_accuracy_vs_nfe(rows: list[dict[str, Any]], path: Path, run: str | None = None) -> Path:
    """:func:`accuracy_vs_nfe_figure` as a PNG at ``path``."""
    return save_figure(accuracy_vs_nfe_figure(rows, run), path)


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
