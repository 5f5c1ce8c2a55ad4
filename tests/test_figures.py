"""Figures a reader can read: one colour per preset everywhere, a legend on every figure inside the visible
image, no overlapping labels, titles that name the run and decoder, degenerate panels said in words, sizes that
fit MLflow's artifact viewer. Checked on the matplotlib Figure objects, without decoding anything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.colors import to_hex

from dllm_lab.decoding import DecodeConfig
from dllm_lab.evaluation import posterior_report, rl_report
from dllm_lab.evaluation.figures import accuracy_vs_nfe_figure, differences_figure, plot_accuracy_vs_nfe
from dllm_lab.evaluation.module import _decoder_label
from dllm_lab.evaluation.palette import (
    ARM_COLORS,
    PRESET_COLORS,
    VARIANT_COLORS,
    _distance,
    preset_color,
    preset_colors,
)
from dllm_lab.evaluation.study_runs import plot_vs_base
from dllm_lab.paths import project_root
from dllm_lab.temporal import TemporalSample, temporal_records
from dllm_lab.temporal.plots import (
    DPI,
    _pyplot,
    answer_timeline_figure,
    plot_all,
    temporal_accuracy_figure,
    tse_distribution_figure,
)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    _pyplot().close("all")


def _row(decoder, L, task, acc, nfe, **extra):
    return {"decoder": decoder, "gen_length": L, "task": task, "accuracy": acc, "nfe": nfe, "tokens_per_s": 1.0,
            **extra}


def _sweep_rows():
    rows = []
    for task in ("arith", "countdown", "sudoku4"):
        rows += [_row("semi_ar", 64, task, 0.6, 64.0), _row("eoser", 64, task, 0.6, 64.0),  # the same point
                 _row("med", 64, task, 0.65, 12.7), _row("ass", 64, task, 0.05, 6.0),
                 _row("eoser_ass", 64, task, 0.05, 6.0), _row("semi_ar", 128, task, 0.62, 128.0),
                 _row("exit_0.1", 80, task, 0.64, 40.0)]
    return rows


def _inside(fig, artist) -> bool:
    box = artist.get_window_extent(fig.canvas.get_renderer())
    return box.x0 >= -1 and box.y0 >= -1 and box.x1 <= fig.bbox.width + 1 and box.y1 <= fig.bbox.height + 1


def _clear_of(fig, artist, others) -> bool:
    """``artist`` overlaps none of ``others`` (axes with their labels, the title)."""
    renderer = fig.canvas.get_renderer()
    box = artist.get_window_extent(renderer)
    return not any(box.overlaps(o.get_tightbbox(renderer) if hasattr(o, "get_subplotspec") else
                                o.get_window_extent(renderer)) for o in others)


def _check_layout(fig) -> None:
    """1000-1400 px wide; every legend inside the image and clear of the panels and the title."""
    fig.canvas.draw()
    assert 1000 <= fig.get_figwidth() * DPI <= 1400
    legends = list(fig.legends) + [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    assert legends, "every figure has a legend"
    for legend in fig.legends:
        assert _inside(fig, legend)
        assert _clear_of(fig, legend, [a for a in fig.axes if a.get_visible()] + [fig._suptitle])


def _suptitle(fig) -> str:
    return fig._suptitle.get_text()


def test_palette_gives_every_preset_and_arm_a_fixed_distinct_hex_colour():
    presets = {p.stem for p in (project_root() / "configs" / "decoder").glob("*.yaml")}
    assert presets <= set(PRESET_COLORS), "a preset in configs/decoder has no fixed colour"
    assert {"rl_countdown", "rl_tse", "rl_tse_acc", "rl_cj_grpo", "rl_base"} <= set(ARM_COLORS)
    early_exit = {**VARIANT_COLORS, **{n: PRESET_COLORS[n] for n in ("semi_ar", "med", "ar_med")}}  # one figure
    for group in (PRESET_COLORS, ARM_COLORS, early_exit):
        colors = [c for name, c in group.items() if name != "psft_base"]
        assert len(set(colors)) == len(colors), "two names of one group share a colour"
    assert all(preset_color(n) == c for n, c in {**PRESET_COLORS, **ARM_COLORS}.items())
    unknown = preset_color("my_variant")
    assert unknown == preset_color("my_variant") and len(unknown) == 7 and unknown.startswith("#")
    names = ["semi_ar", "my_0.05", "my_0.1", "my_0.3", "my_1.0", "mine", "my_med_0.1", "ee_loose", "ee_0.05"]
    figure = preset_colors(names)
    assert list(figure) == names and figure["semi_ar"] == PRESET_COLORS["semi_ar"]
    assert preset_colors(reversed(names)) == figure, "the colours depend on the set of names, not their order"
    hashed = [figure[n] for n in names[1:]]
    assert min(_distance(a, b) for i, a in enumerate(hashed) for b in hashed[i + 1:]) >= 70


def test_palette_imports_no_plotting_library():
    code = "import sys, dllm_lab.evaluation.palette as p; p.preset_color('med'); print('matplotlib' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_accuracy_vs_nfe_has_one_colour_per_preset_a_table_legend_and_no_point_labels():
    rows = _sweep_rows()
    rows += [_row("my_variant", 80, r["task"], 0.3, 30.0) for r in rows if r["decoder"] == "med"]
    fig = accuracy_vs_nfe_figure(rows, run="decoding_ablation")
    assert "decoding_ablation" in _suptitle(fig)
    (legend,) = fig.legends
    settings = list(dict.fromkeys((r["decoder"], r["gen_length"]) for r in rows))
    texts = [t.get_text() for t in legend.get_texts()]
    assert len(texts) == len(settings) + 1, "a header, then one line per setting"
    assert texts[0].split()[:3] == ["decoder", "L", "NFE"]
    for (decoder, L), text, handle in zip(settings, texts[1:], legend.legend_handles[1:], strict=True):
        assert text.split()[:2] == [decoder, str(L)]
        assert to_hex(handle.get_color()) == preset_colors(d for d, _ in settings)[decoder]
    assert texts[1].split()[3:] == ["0.600", "0.600", "0.600"]  # accuracy per task, readable in the table
    # markers: one per length, the same preset keeps its colour across lengths
    markers = {L: h.get_marker() for (_, L), h in zip(settings, legend.legend_handles[1:], strict=True)}
    assert len(set(markers.values())) == 3
    panels = [a for a in fig.axes if a.collections]
    assert [a.get_title() for a in panels] == ["arith", "countdown", "sudoku4"]
    colour = [{c.get_label(): to_hex(c.get_facecolor()[0]) for c in a.collections} for a in panels]
    assert colour[0] == colour[1] == colour[2], "a preset has one colour in every panel"
    assert colour[0]["med L=64"] == PRESET_COLORS["med"]
    assert all(not a.texts for a in panels), "no text on the points: they would overlap"
    sizes = {c.get_label(): c.get_sizes()[0] for c in panels[0].collections}
    assert sizes["semi_ar L=64"] > sizes["eoser L=64"], "a point on top of another is drawn inside it, as a ring"
    _check_layout(fig)


def test_differences_colour_by_preset_fill_by_resolution_and_name_the_run(tmp_path):
    rows = [_row("semi_ar", 64, t, 0.6, 64.0, baseline="semi_ar", delta=0.0, delta_low=0.0, delta_high=0.0)
            for t in ("arith", "sudoku4")]
    rows += [_row("med", 64, t, 0.5, 12.0, baseline="semi_ar", delta=-0.1, delta_low=-0.15, delta_high=-0.05)
             for t in ("arith", "sudoku4")]
    fig = differences_figure(rows, run="decoding_ablation")
    assert "semi_ar" in _suptitle(fig) and "decoding_ablation" in _suptitle(fig)
    for ax in fig.axes:
        lines = {c.get_label(): c.lines[0] for c in ax.containers}
        med = next(v for k, v in lines.items() if k.startswith("med|"))
        base = next(v for k, v in lines.items() if k.startswith("semi_ar|"))
        assert to_hex(med.get_color()) == PRESET_COLORS["med"] and to_hex(med.get_markerfacecolor()) == "#9467bd"
        assert to_hex(base.get_markerfacecolor()) == "#ffffff", "not resolved: an open marker"
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["semi_ar L64", "med L64"]
    _check_layout(fig)
    empty = differences_figure([])
    assert any("no paired differences" in t.get_text() for t in empty.axes[0].texts)


def test_study_plots_colour_each_arm_and_name_the_study(tmp_path, monkeypatch):
    import dllm_lab.evaluation.figures as figures

    seen = []
    monkeypatch.setattr(figures, "save_figure", lambda fig, path: seen.append(fig) or Path(path))
    rows = [{"arm": arm, "task": "countdown", "delta": 0.01, "low": -0.02, "high": 0.04}
            for arm in rl_report.ARMS]
    plot_vs_base(rows, tmp_path / "vs_base.png", rl_report.ARM_LABELS, study="rl")
    plot_vs_base([{**r, "arm": "psft_gold"} for r in rows[:1]], tmp_path / "b.png", posterior_report.ARM_LABELS,
                 study="posterior_sft")
    rl, psft = seen
    assert "study rl" in _suptitle(rl) and "study posterior_sft" in _suptitle(psft)
    colours = {c.get_label().split("|")[0]: to_hex(c.lines[0].get_color()) for c in rl.axes[0].containers}
    assert colours == {arm: ARM_COLORS[arm] for arm in rl_report.ARMS}


def _records(lengths=(64, 128), zero_at=128, n=12, tasks=("arith", "sudoku4")):
    rows = []
    for L in lengths:
        for task in tasks:
            samples = [TemporalSample(answers=["1", "2", str(i % 2)], steps=[0, 1, 2],
                                      correct=[False, False, i % 2 == 1], votes={"exp": "1"},
                                      vote_correct={"exp": True}, tse=0.0 if L == zero_at else 0.1 * i,
                                      confidence=0.5, answer_changes=1)
                       for i in range(n)]
            rows += temporal_records(samples, task, list(range(n)), L)
    return pd.DataFrame(rows)


def test_a_tse_panel_where_every_tse_is_zero_says_so_in_words():
    fig = tse_distribution_figure(_records(), run="temporal_voting", decoder="semi_ar")
    title = _suptitle(fig)
    assert "run temporal_voting" in title and "decoder semi_ar" in title
    panels = {a.get_title(): a for a in fig.axes if a.get_title()}
    assert set(panels) == {"arith L=64", "arith L=128", "sudoku4 L=64", "sudoku4 L=128"}
    for name, ax in panels.items():
        if name.endswith("L=128"):
            assert any("all TSE = 0: every step agreed" in t.get_text() for t in ax.texts)
            assert not ax.patches, "no histogram on a 0..1e-6 axis"
        else:
            assert ax.patches and ax.get_legend() is not None and ax.get_xlim()[1] > 1e-3
    undefined = _records(lengths=(64,), zero_at=None).assign(tse=float("nan"))
    texts = [t.get_text() for a in tse_distribution_figure(undefined).axes for t in a.texts]
    assert any(t.startswith("no TSE") for t in texts)
    _check_layout(fig)


def test_timeline_names_run_and_decoder_keeps_its_legend_at_the_top_and_lays_one_setting_side_by_side():
    fig = answer_timeline_figure(_records(lengths=(64,)), run="quickstart decoder=med", decoder="med (L=64)")
    assert "run quickstart decoder=med" in _suptitle(fig) and "decoder med (L=64)" in _suptitle(fig)
    panels = [a for a in fig.axes if a.images]
    assert len({round(a.get_position().y0, 3) for a in panels}) == 1, "one setting: the tasks side by side"
    (legend,) = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == ["no answer", "wrong", "correct"]
    fig.canvas.draw()
    top = legend.get_window_extent(fig.canvas.get_renderer())
    assert top.y1 > 0.8 * fig.bbox.height, "the legend sits at the top, not below the fold"
    _check_layout(fig)
    grid = answer_timeline_figure(_records(), decoder="semi_ar")
    assert len({round(a.get_position().y0, 3) for a in grid.axes if a.images}) == 2  # rows: tasks
    _check_layout(grid)


def test_empty_data_gives_a_figure_that_says_so(tmp_path):
    empty = temporal_accuracy_figure([], run="r")
    assert any("no result rows" in t.get_text() for t in empty.axes[0].texts)
    assert any("no temporal records" in t.get_text() for t in answer_timeline_figure(pd.DataFrame()).axes[0].texts)
    fig = temporal_accuracy_figure([{"task": "arith", "gen_length": 64, "accuracy": 0.5, "tcv_exp_accuracy": 0.6,
                                     "everpass": 0.7}], run="quickstart", decoder="semi_ar")
    assert "run quickstart" in _suptitle(fig) and len(fig.legends[0].get_texts()) == 3
    _check_layout(fig)
    paths = plot_all(_records(), [{"task": "arith", "gen_length": 64, "accuracy": 0.5, "everpass": 0.7}], tmp_path,
                     run="r", decoder="d")
    assert [p.name for p in paths] == ["answer_timeline.png", "tse_distribution.png", "temporal_accuracy.png"]
    assert plot_accuracy_vs_nfe([], tmp_path / "a.png").stat().st_size > 0


def test_eval_plot_titles_name_the_decoder_preset_from_the_run_tags():
    class Tagged:
        tags = {"preset.decoder": "med"}
        _run_name = "quickstart decoder=med"

    med = DecodeConfig(gen_length=64, block_length=64, steps=None, adaptive="med", scorer="entropy")
    assert _decoder_label(med, Tagged()) == "med (L=64, adaptive med)"
    assert _decoder_label(DecodeConfig(), None) == "low_confidence, linear (L=64, 64 steps)"
