"""Plots of temporal signals (Time Is a Feature, docs/methods.md "Temporal signals"), as PNG files.

Pure: each function takes records (the DataFrame of :func:`dllm_lab.temporal.read_records`) or
result rows, writes one PNG to ``path`` and returns the path. The evaluation logs them as MLflow artifacts
under ``plots/``; the notebook ``notebooks/temporal_dynamics.ipynb`` redraws them from a run's artifacts.
Panels are one per setting: rows are tasks, columns generation lengths (and decoders, when several).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dllm_lab.temporal.signals import WEIGHTINGS

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

# timeline colours: no answer, wrong answer, correct answer
TIMELINE_COLORS = ("#d9d9d9", "#d62728", "#2ca02c")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (CI, servers, notebooks alike)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Figure, path: str | Path, bottom: float = 0.0) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout(rect=(0.0, bottom, 1.0, 1.0))
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _setting(row: Any, with_decoder: bool) -> str:
    label = f"L={int(row['gen_length'])}" if "gen_length" in row and row["gen_length"] is not None else ""
    if with_decoder:
        label = f"{row['decoder']} {label}".strip()
    return label


def _grid(frame: pd.DataFrame) -> tuple[list[str], list[str], dict[tuple[str, str], pd.DataFrame]]:
    """(tasks, settings, {(task, setting): records}) for a rows = tasks, columns = settings layout."""
    if frame.empty:
        raise ValueError("no temporal records to plot: the evaluation decoded no sample")
    with_decoder = "decoder" in frame and frame["decoder"].nunique() > 1
    keys = frame.apply(lambda r: _setting(r, with_decoder), axis=1)
    frame = frame.assign(_setting=keys)
    tasks = list(dict.fromkeys(frame["task"]))
    order = frame.sort_values(["gen_length"] if "gen_length" in frame else [])["_setting"]
    settings = list(dict.fromkeys(order))
    panels = {(str(t), str(s)): g for (t, s), g in frame.groupby(["task", "_setting"], sort=False)}
    return tasks, settings, panels


def timeline_matrix(step_answers: Sequence[Sequence[Any]], step_correct: Sequence[Sequence[bool]]) -> np.ndarray:
    """(samples, max steps) codes: 0 no answer, 1 wrong, 2 correct, NaN after a shorter trajectory ends."""
    width = max((len(a) for a in step_answers), default=0)
    out = np.full((len(step_answers), max(width, 1)), np.nan)
    for i, (answers, correct) in enumerate(zip(step_answers, step_correct, strict=True)):
        for s, (a, c) in enumerate(zip(answers, correct, strict=True)):
            out[i, s] = 0.0 if a is None else (2.0 if c else 1.0)
    return out


def plot_answer_timeline(records: pd.DataFrame, path: str | Path, max_samples: int = 100) -> Path:
    """Samples x steps per setting, coloured correct / wrong / no answer; samples sorted by final
    correctness, then whether they were ever correct (so correct-then-wrong rows sit together)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    plt = _pyplot()
    tasks, settings, panels = _grid(records)
    fig, axes = plt.subplots(len(tasks), len(settings), figsize=(3.6 * len(settings), 2.8 * len(tasks)),
                             squeeze=False)
    cmap = ListedColormap(TIMELINE_COLORS).with_extremes(bad="white")  # NaN: the trajectory had ended
    for i, task in enumerate(tasks):
        for j, setting in enumerate(settings):
            ax = axes[i][j]
            group = panels.get((task, setting))
            if group is None:
                ax.axis("off")
                continue
            group = group.sort_values(["final_correct", "ever_correct", "sample_id"], ascending=[False, False, True])
            group = group.head(max_samples)
            matrix = timeline_matrix(list(group["step_answers"]), list(group["step_correct"]))
            ax.imshow(np.ma.masked_invalid(matrix), aspect="auto", interpolation="nearest", cmap=cmap, vmin=0, vmax=2)
            ax.set_title(f"{task} {setting}".strip(), fontsize=9)
            ax.set_xlabel("decoding step", fontsize=8)
            ax.set_ylabel("sample", fontsize=8)
            ax.tick_params(labelsize=7)
    labels = ("no answer", "wrong", "correct")
    fig.legend(handles=[Patch(color=c, label=n) for c, n in zip(TIMELINE_COLORS, labels, strict=True)],
               loc="lower center", fontsize=7, ncol=3)
    return _save(fig, path, bottom=0.35 / fig.get_figheight())


def plot_tse_distribution(records: pd.DataFrame, path: str | Path, bins: int = 20) -> Path:
    """Histograms of temporal semantic entropy for samples correct vs wrong at the final step."""
    plt = _pyplot()
    tasks, settings, panels = _grid(records)
    fig, axes = plt.subplots(len(tasks), len(settings), figsize=(3.4 * len(settings), 2.6 * len(tasks)),
                             squeeze=False)
    for i, task in enumerate(tasks):
        for j, setting in enumerate(settings):
            ax = axes[i][j]
            group = panels.get((task, setting))
            if group is None:
                ax.axis("off")
                continue
            tse = group["tse"].to_numpy(dtype=float)
            top = float(np.nanmax(tse)) if np.isfinite(tse).any() else 0.0
            edges = np.linspace(0.0, max(top, 1e-6), bins + 1)
            for flag, name, color in ((True, "correct", TIMELINE_COLORS[2]), (False, "wrong", TIMELINE_COLORS[1])):
                values = group.loc[group["final_correct"] == flag, "tse"].to_numpy(dtype=float)
                values = values[np.isfinite(values)]
                mean = f", mean {values.mean():.2f}" if len(values) else ""
                ax.hist(values, bins=edges, alpha=0.6, color=color, label=f"{name} (n={len(values)}{mean})")
            ax.set_title(f"{task} {setting}".strip(), fontsize=9)
            ax.set_xlabel("TSE (nats)", fontsize=8)
            ax.set_ylabel("samples", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.legend(fontsize=6)
    return _save(fig, path)


def plot_temporal_accuracy(rows: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Grouped bars per task and setting: final-step accuracy, TCV accuracy per weighting, EverPass@1|t."""
    plt = _pyplot()
    rows = sorted(rows, key=lambda r: (r["task"], str(r.get("decoder", "")), r.get("gen_length", 0)))
    with_decoder = len({r.get("decoder") for r in rows}) > 1
    series = [("final", "accuracy")] + [(f"TCV {w}", f"tcv_{w}_accuracy") for w in WEIGHTINGS]
    series = [(n, k) for n, k in series if any(k in r for r in rows)] + [("EverPass", "everpass")]
    labels = [f"{r['task']}\n{_setting(r, with_decoder)}".strip() for r in rows]
    x = np.arange(len(rows))
    width = 0.8 / len(series)
    if not rows:
        raise ValueError("no result rows to plot")
    fig, ax = plt.subplots(figsize=(min(14.0, max(4.0, 0.3 * len(rows) * len(series) + 1.5)), 3.6))
    colors = plt.get_cmap("tab10").colors
    for k, (name, key) in enumerate(series):
        values = [float(r.get(key, np.nan)) for r in rows]
        ax.bar(x + (k - (len(series) - 1) / 2) * width, np.nan_to_num(values), width, label=name, color=colors[k])
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("final vs temporal voting vs EverPass", fontsize=9)
    ax.legend(fontsize=7, ncol=len(series), loc="upper center", bbox_to_anchor=(0.5, -0.18))
    return _save(fig, path)


def plot_all(records: pd.DataFrame, rows: Sequence[dict[str, Any]], out_dir: str | Path,
             max_samples: int = 100) -> list[Path]:
    """The three plots into ``out_dir``: answer_timeline.png, tse_distribution.png, temporal_accuracy.png."""
    out = Path(out_dir)
    return [
        plot_answer_timeline(records, out / "answer_timeline.png", max_samples),
        plot_tse_distribution(records, out / "tse_distribution.png"),
        plot_temporal_accuracy(rows, out / "temporal_accuracy.png"),
    ]
