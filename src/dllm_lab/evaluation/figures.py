"""Study figures as PNGs (matplotlib): each setting's paired difference from the baseline, and accuracy against
forward passes per sample. The sweeps, the study reports and the dashboards draw with these, one colour per
decoder preset (:mod:`dllm_lab.evaluation.palette`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dllm_lab.evaluation.palette import preset_colors
from dllm_lab.temporal.plots import empty_figure, figure_title, length_markers, new_figure, save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure


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
        return empty_figure(title, "no paired differences: the sweep has no baseline, or no problem in common with it")
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
        return empty_figure(title, "no results: the sweep decoded nothing")
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
