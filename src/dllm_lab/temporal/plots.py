"""Plots of temporal signals (Time Is a Feature, docs/methods.md "Temporal signals"), as PNG files, and the
figure conventions every PNG of the project shares.

Pure: each ``*_figure`` function takes records (the DataFrame of :func:`dllm_lab.temporal.read_records`) or
result rows and returns a matplotlib Figure; each ``plot_*`` function draws the same figure, writes it to
``path`` as a PNG and returns the path. The evaluation logs them as MLflow artifacts under ``plots/``; the
notebook ``notebooks/temporal_dynamics.ipynb`` redraws them from a run's artifacts. Panels are one per setting:
rows are tasks, columns generation lengths (and decoders, when several); a single setting puts the tasks side
by side.

Conventions (shared with :mod:`dllm_lab.evaluation.sweep` and the study reports):

- the title names what is shown, the run and the decoder (``run=``, ``decoder=``, when the caller knows them);
- 1000 to 1400 px wide at :data:`DPI` (what MLflow's artifact viewer shows whole), legends at the top or the
  right, inside the figure;
- one colour per decoder preset or study arm (:func:`dllm_lab.evaluation.palette.preset_colors`), one marker
  per generation length (:func:`length_markers`);
- a panel with nothing to draw says why, in words (:func:`say`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dllm_lab.temporal.signals import WEIGHTINGS

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# timeline colours: no answer, wrong answer, correct answer
TIMELINE_COLORS = ("#d9d9d9", "#d62728", "#2ca02c")
DPI = 100
MIN_WIDTH, MAX_WIDTH = 10.0, 14.0  # inches at DPI: 1000-1400 px
LENGTH_MARKERS = "os^Dv<>P*X"
ZERO_TSE = 1e-9  # nats: a TSE this small is an agreement of every kept step


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (CI, servers, notebooks alike)
    import matplotlib.pyplot as plt

    return plt


def new_figure(width: float, height: float, nrows: int = 1, ncols: int = 1, **subplots: Any):
    """``(fig, axes)`` with constrained layout (titles, outside legends and labels never overlap), ``width``
    clamped to :data:`MIN_WIDTH`..:data:`MAX_WIDTH` inches; ``axes`` is always 2-D."""
    plt = _pyplot()
    width = min(MAX_WIDTH, max(MIN_WIDTH, width))
    return plt.subplots(nrows, ncols, figsize=(width, height), squeeze=False, layout="constrained", **subplots)


def save_figure(fig: Figure, path: str | Path) -> Path:
    """Write ``fig`` to ``path`` at :data:`DPI` and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    _pyplot().close(fig)
    return path


def figure_title(what: str, run: str | None = None, decoder: str | None = None, study: str | None = None) -> str:
    """``what``, then ``study <study> · run <run> · decoder <decoder>`` for those given."""
    about = [f"study {study}" if study else "", f"run {run}" if run else "", f"decoder {decoder}" if decoder else ""]
    about = [a for a in about if a]
    return what + ("\n" + " · ".join(about) if about else "")


def run_name_of(logger) -> str | None:
    """The name a logger's MLflow run is shown under (``None`` for other loggers or none)."""
    name = getattr(logger, "_run_name", None)
    return str(name) if name else None


def length_markers(lengths: Iterable[Any]) -> dict[int, str]:
    """One marker per generation length, in increasing order of the lengths."""
    return {int(L): m for L, m in zip(sorted({int(L) for L in lengths}), LENGTH_MARKERS * 3, strict=False)}


def say(ax: Axes, text: str) -> None:
    """Replace a panel's plot with ``text``: what its data is, in words (a degenerate or empty panel)."""
    ax.set_xticks([])
    ax.set_yticks([])
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", fontsize=8, wrap=True,
            color="#333333")


def empty_figure(title: str, text: str) -> Figure:
    """A one-panel figure titled ``title`` that says ``text`` instead of plotting: there is nothing to draw."""
    fig, axes = new_figure(MIN_WIDTH, 3.0)
    say(axes[0][0], text)
    fig.suptitle(title, fontsize=10)
    return fig


def _decoder_of(frame: Any, decoder: str | None) -> str | None:
    """``decoder``, else the records' or rows' single decoder name (several: they are named in the panels)."""
    if decoder or frame is None:
        return decoder
    names = set()
    if hasattr(frame, "columns"):
        if "decoder" in frame.columns:
            names = {str(d) for d in frame["decoder"].dropna().unique()}
    else:
        names = {str(r["decoder"]) for r in frame if r.get("decoder") is not None}
    return ", ".join(sorted(names)) or None


def _setting(row: Any, with_decoder: bool) -> str:
    label = f"L={int(row['gen_length'])}" if "gen_length" in row and row["gen_length"] is not None else ""
    if with_decoder:
        label = f"{row['decoder']} {label}".strip()
    return label


def _grid(frame: pd.DataFrame) -> tuple[list[str], list[str], dict[tuple[str, str], pd.DataFrame]]:
    """(tasks, settings, {(task, setting): records}) for a rows = tasks, columns = settings layout."""
    with_decoder = "decoder" in frame and frame["decoder"].nunique() > 1
    keys = frame.apply(lambda r: _setting(r, with_decoder), axis=1)
    frame = frame.assign(_setting=keys)
    tasks = list(dict.fromkeys(frame["task"]))
    order = frame.sort_values(["gen_length"] if "gen_length" in frame else [])["_setting"]
    settings = list(dict.fromkeys(order))
    panels = {(str(t), str(s)): g for (t, s), g in frame.groupby(["task", "_setting"], sort=False)}
    return tasks, settings, panels


def _panels(records: pd.DataFrame, panel_width: float, panel_height: float, what: str, run: str | None,
            decoder: str | None):
    """``(fig, [(ax, task, setting, records or None)])``: rows are tasks and columns settings, or the tasks
    side by side for one setting; a figure that says so when there are no records."""
    title = figure_title(what, run, _decoder_of(records, decoder))
    if records is None or len(records) == 0:
        return empty_figure(title, "no temporal records: the evaluation decoded no sample"), []
    tasks, settings, panels = _grid(records)
    cells = [(t, s) for t in tasks for s in settings]
    if len(settings) == 1:
        nrows, ncols = math.ceil(len(tasks) / 4), min(len(tasks), 4)
    else:
        nrows, ncols = len(tasks), len(settings)
    fig, axes = new_figure(panel_width * ncols, panel_height * nrows + 0.9, nrows, ncols)
    fig.suptitle(title, fontsize=10)
    out = []
    for k, ax in enumerate(axes.flat):
        if k >= len(cells):
            ax.axis("off")
            continue
        task, setting = cells[k]
        ax.set_title(f"{task} {setting}".strip(), fontsize=9)
        out.append((ax, task, setting, panels.get((task, setting))))
    return fig, out


def timeline_matrix(step_answers: Sequence[Sequence[Any]], step_correct: Sequence[Sequence[bool]]) -> np.ndarray:
    """(samples, max steps) codes: 0 no answer, 1 wrong, 2 correct, NaN after a shorter trajectory ends."""
    width = max((len(a) for a in step_answers), default=0)
    out = np.full((len(step_answers), max(width, 1)), np.nan)
    for i, (answers, correct) in enumerate(zip(step_answers, step_correct, strict=True)):
        for s, (a, c) in enumerate(zip(answers, correct, strict=True)):
            out[i, s] = 0.0 if a is None else (2.0 if c else 1.0)
    return out


def answer_timeline_figure(records: pd.DataFrame, max_samples: int = 100, run: str | None = None,
                           decoder: str | None = None) -> Figure:
    """Samples x steps per setting, coloured correct / wrong / no answer; samples sorted by final
    correctness, then whether they were ever correct (so correct-then-wrong rows sit together)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    fig, panels = _panels(records, 4.6, 2.5, "Answer at each decoding step (rows: samples)", run, decoder)
    cmap = ListedColormap(TIMELINE_COLORS).with_extremes(bad="white")  # NaN: the trajectory had ended
    for ax, _, _, group in panels:
        if group is None:
            say(ax, "not run")
            continue
        group = group.sort_values(["final_correct", "ever_correct", "sample_id"], ascending=[False, False, True])
        total, group = len(group), group.head(max_samples)
        matrix = timeline_matrix(list(group["step_answers"]), list(group["step_correct"]))
        ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=2)
        ax.set_xlabel("decoding step", fontsize=8)
        ax.set_ylabel("sample" if total == len(group) else f"sample (first {len(group)} of {total})", fontsize=8)
        ax.tick_params(labelsize=7)
    if panels:
        labels = ("no answer", "wrong", "correct")
        fig.legend(handles=[Patch(color=c, label=n) for c, n in zip(TIMELINE_COLORS, labels, strict=True)],
                   loc="outside right upper", fontsize=8, frameon=False)
    return fig


def plot_answer_timeline(records: pd.DataFrame, path: str | Path, max_samples: int = 100, run: str | None = None,
                         decoder: str | None = None) -> Path:
    """:func:`answer_timeline_figure` as a PNG at ``path``."""
    return save_figure(answer_timeline_figure(records, max_samples, run, decoder), path)


def tse_distribution_figure(records: pd.DataFrame, bins: int = 20, run: str | None = None,
                            decoder: str | None = None) -> Figure:
    """Histograms of temporal semantic entropy for samples correct vs wrong at the final step; a panel where
    every TSE is 0 (every kept step gave the same answer) or none is defined says so instead."""
    fig, panels = _panels(records, 4.4, 2.5, "Temporal semantic entropy, correct vs wrong at the end", run,
                          decoder)
    kinds = ((True, "correct", TIMELINE_COLORS[2]), (False, "wrong", TIMELINE_COLORS[1]))
    for ax, _, _, group in panels:
        if group is None:
            say(ax, "not run")
            continue
        tse = group["tse"].to_numpy(dtype=float)
        finite = tse[np.isfinite(tse)]
        counts = {name: int(((group["final_correct"] == flag) & np.isfinite(tse)).sum()) for flag, name, _ in kinds}
        if finite.size == 0:
            say(ax, f"no TSE: no sample had a parsed answer\nin the kept steps ({len(group)} samples)")
            continue
        if float(np.max(np.abs(finite))) <= ZERO_TSE:
            say(ax, f"all TSE = 0: every step agreed\n({counts['correct']} correct, {counts['wrong']} wrong)")
            continue
        edges = np.linspace(0.0, float(np.max(finite)), bins + 1)
        for flag, name, color in kinds:
            values = group.loc[group["final_correct"] == flag, "tse"].to_numpy(dtype=float)
            values = values[np.isfinite(values)]
            mean = f", mean {values.mean():.2f}" if len(values) else ""
            ax.hist(values, bins=edges, alpha=0.6, color=color, label=f"{name} (n={len(values)}{mean})")
        ax.set_xlabel("TSE (nats)", fontsize=8)
        ax.set_ylabel("samples", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="upper right")
    return fig


def plot_tse_distribution(records: pd.DataFrame, path: str | Path, bins: int = 20, run: str | None = None,
                          decoder: str | None = None) -> Path:
    """:func:`tse_distribution_figure` as a PNG at ``path``."""
    return save_figure(tse_distribution_figure(records, bins, run, decoder), path)


def temporal_accuracy_figure(rows: Sequence[dict[str, Any]], run: str | None = None,
                             decoder: str | None = None) -> Figure:
    """Grouped bars per task and setting: final-step accuracy, TCV accuracy per weighting, EverPass@1|t."""
    rows = sorted(rows, key=lambda r: (r["task"], str(r.get("decoder", "")), r.get("gen_length", 0)))
    title = figure_title("Final-step accuracy vs temporal voting (TCV) vs EverPass", run, _decoder_of(rows, decoder))
    if not rows:
        return empty_figure(title, "no result rows: the evaluation decoded no sample")
    with_decoder = len({r.get("decoder") for r in rows}) > 1
    series = [("final", "accuracy")] + [(f"TCV {w}", f"tcv_{w}_accuracy") for w in WEIGHTINGS]
    series = [(n, k) for n, k in series if any(k in r for r in rows)] + [("EverPass", "everpass")]
    labels = [f"{r['task']}\n{_setting(r, with_decoder)}".strip() for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    fig, axes = new_figure(0.3 * len(rows) * len(series) + 1.5, 4.0)
    ax = axes[0][0]
    colors = _pyplot().get_cmap("tab10").colors
    for k, (name, key) in enumerate(series):
        values = [float(r.get(key, np.nan)) for r in rows]
        ax.bar(x + (k - (len(series) - 1) / 2) * width, np.nan_to_num(values), width, label=name, color=colors[k])
    ax.set_xticks(x, labels, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    fig.suptitle(title, fontsize=10)
    fig.legend(*ax.get_legend_handles_labels(), fontsize=8, loc="outside right upper", frameon=False)
    return fig


def plot_temporal_accuracy(rows: Sequence[dict[str, Any]], path: str | Path, run: str | None = None,
                           decoder: str | None = None) -> Path:
    """:func:`temporal_accuracy_figure` as a PNG at ``path``."""
    return save_figure(temporal_accuracy_figure(rows, run, decoder), path)


def accuracy_over_decode_figure(runs: dict[str, pd.DataFrame], points: int = 20, study: str | None = None) -> Figure:
    """Per task (and length): the share of samples whose current answer is correct at each fraction of the decode,
    one line per run; runs with different step counts (an adaptive decoder) line up on the fraction of steps."""
    title = figure_title("Correct answers over the decode", study=study)
    frames = {label: frame for label, frame in runs.items() if len(frame)}
    if not frames:
        return empty_figure(title, "no temporal records: the runs decoded no sample with temporal.enabled=true")
    panels = sorted({(t, int(n)) for f in frames.values() for t, n in zip(f["task"], f["gen_length"], strict=True)})
    fig, axes = new_figure(3.6 * len(panels) + 1.8, 3.2, ncols=len(panels))
    fractions = np.linspace(1 / points, 1.0, points)
    colors = _pyplot().get_cmap("tab10").colors
    for ax, (task, length) in zip(axes[0], panels, strict=True):
        for k, (label, frame) in enumerate(frames.items()):
            mine = frame[(frame["task"] == task) & (frame["gen_length"] == length)]
            if mine.empty:
                continue
            at = [np.mean([c[max(0, int(np.ceil(f * len(c))) - 1)] for c in mine["step_correct"] if len(c)])
                  for f in fractions]
            ax.plot(fractions, at, marker="o", markersize=3, label=label, color=colors[k % len(colors)])
        ax.set_title(f"{task}, L={length}", fontsize=9)
        ax.set_xlabel("fraction of the decoding steps")
        ax.set_ylim(0, 1.02)
    axes[0][0].set_ylabel("share correct")
    fig.suptitle(title, fontsize=10)
    fig.legend(*axes[0][0].get_legend_handles_labels(), fontsize=8, loc="outside right upper", frameon=False)
    return fig


def plot_accuracy_over_decode(runs: dict[str, pd.DataFrame], path: str | Path, points: int = 20,
                              study: str | None = None) -> Path:
    """:func:`accuracy_over_decode_figure` as a PNG at ``path``."""
    return save_figure(accuracy_over_decode_figure(runs, points, study), path)


def plot_all(records: pd.DataFrame, rows: Sequence[dict[str, Any]], out_dir: str | Path,
             max_samples: int = 100, run: str | None = None, decoder: str | None = None) -> list[Path]:
    """The three plots into ``out_dir``: answer_timeline.png, tse_distribution.png, temporal_accuracy.png;
    ``run`` and ``decoder`` name the run and its decoder in the titles."""
    out = Path(out_dir)
    return [
        plot_answer_timeline(records, out / "answer_timeline.png", max_samples, run, decoder),
        plot_tse_distribution(records, out / "tse_distribution.png", run=run, decoder=decoder),
        plot_temporal_accuracy(rows, out / "temporal_accuracy.png", run, decoder),
    ]
