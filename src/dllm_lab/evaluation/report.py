"""Results tables: the per-run table, the temporal-voting table shaped like Table 1 of Time Is a Feature, and
the temporal differences with their 95% intervals."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from dllm_lab.evaluation.stats import group_bootstrap, paired_bootstrap
from dllm_lab.temporal import WEIGHTINGS

if TYPE_CHECKING:
    import pandas as pd

METRICS = ("accuracy", "parse_rate", "nfe", "tokens_per_s", "samples")
# (column header, metric key) of the temporal columns, shown when the results have them
TEMPORAL_COLUMNS = (
    *((f"TCV {w}", f"tcv_{w}_accuracy") for w in WEIGHTINGS),
    ("EverPass", "everpass"),
    ("correct->wrong", "correct_then_wrong"),
    ("TSE correct", "tse_correct_mean"),
    ("TSE wrong", "tse_wrong_mean"),
    ("answer log-lik", "posterior_answer_ll"),  # posterior decodes (decoder=posterior)
    ("reasoning tokens", "posterior_reasoning_tokens"),
)


def _cell(value: Any, digits: int = 3) -> str:
    """A number with ``digits`` decimals; '-' when missing or not finite (never 'nan')."""
    if value is None or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "-"
    return f"{value:.{digits}f}"


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown results table: task, samples, accuracy, parse rate, NFE, generated tokens/s, plus the
    temporal columns (TCV per weighting, EverPass, correct->wrong, TSE of correct / wrong samples) that
    any task has."""
    extra = [(h, k) for h, k in TEMPORAL_COLUMNS if any(k in r for r in results.values())]
    before = any("accuracy_before" in r for r in results.values())
    accuracy = "accuracy before -> after" if before else "accuracy"
    header = f"| task | samples | {accuracy} | parsed | NFE | tokens/s |" + "".join(f" {h} |" for h, _ in extra)
    lines = [header, "|---|---:|---:|---:|---:|---:|" + "---:|" * len(extra)]
    for name, r in results.items():
        cell = f"{r['accuracy']:.3f}"
        if before:
            cell = f"{_cell(r.get('accuracy_before'))} -> {cell}"
        lines.append(
            f"| {name} | {int(r['samples'])} | {cell} | {r['parse_rate']:.3f} | "
            f"{r['nfe']:.1f} | {r['tokens_per_s']:.0f} |" + "".join(f" {_cell(r.get(k))} |" for _, k in extra)
        )
    return "\n".join(lines)


def with_before(after: dict[str, dict[str, float]], before: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """``after`` with each task's ``accuracy_before`` (from ``before``, the same problems decoded before training):
    :func:`format_table` then shows ``before -> after``."""
    return {name: {**row, **({"accuracy_before": before[name]["accuracy"]} if name in before else {})}
            for name, row in after.items()}


def aligned(markdown: str) -> str:
    """A Markdown text whose tables are padded to column width (right-aligned where the table says
    ``---:``), so they read as tables in a terminal too; other lines are kept as they are."""
    out: list[str] = []
    block: list[list[str]] = []

    def flush() -> None:
        if not block:
            return
        right = [c.strip().endswith(":") for c in block[1]] if len(block) > 1 else []
        widths = [max(len(row[i]) if i < len(row) else 0 for k, row in enumerate(block) if k != 1)
                  for i in range(max(map(len, block)))]
        for k, row in enumerate(block):
            if k == 1:
                cells = [("-" * (w - 1) + ":") if i < len(right) and right[i] else "-" * w
                         for i, w in enumerate(widths)]
            else:
                cells = [(c.rjust(w) if i < len(right) and right[i] else c.ljust(w))
                         for i, (c, w) in enumerate(zip(row + [""] * (len(widths) - len(row)), widths, strict=True))]
            out.append("| " + " | ".join(cells) + " |")
        block.clear()

    for line in markdown.splitlines():
        if line.startswith("|") and line.rstrip().endswith("|"):
            block.append([c.strip() for c in line.strip()[1:-1].split("|")])
        else:
            flush()
            out.append(line)
    flush()
    return "\n".join(out)


def temporal_table(rows: list[dict[str, Any]]) -> str:
    """Markdown shaped like Table 1 of Time Is a Feature: per task and generation length, final-step
    accuracy (baseline), TCV accuracy per weighting, EverPass@1|t; then correct->wrong rate and mean TSE of
    correct and of wrong samples. ``rows``: dicts with ``task``, ``gen_length`` (and ``decoder`` when
    several decoders are compared) and the metric keys of :func:`results_from_metrics`."""
    with_decoder = len({r.get("decoder") for r in rows}) > 1
    text_columns = ["task", *(["decoder"] if with_decoder else [])]
    head = [*text_columns, "L", "samples", "baseline", *(f"TCV {w}" for w in WEIGHTINGS), "EverPass",
            "correct->wrong", "TSE correct", "TSE wrong"]
    align = "|" + "---|" * len(text_columns) + "---:|" * (len(head) - len(text_columns))
    lines = ["| " + " | ".join(head) + " |", align]
    order = sorted(rows, key=lambda r: (r["task"], str(r.get("decoder", "")), r.get("gen_length", 0)))
    for r in order:
        cells = [r["task"], *([str(r.get("decoder", ""))] if with_decoder else []), str(r.get("gen_length", "-")),
                 str(int(r.get("samples", 0))), _cell(r.get("accuracy")),
                 *(_cell(r.get(f"tcv_{w}_accuracy")) for w in WEIGHTINGS), _cell(r.get("everpass")),
                 _cell(r.get("correct_then_wrong")), _cell(r.get("tse_correct_mean")), _cell(r.get("tse_wrong_mean"))]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def temporal_differences(records: pd.DataFrame) -> list[dict[str, Any]]:
    """Per (decoder, task, length) of the temporal records: each TCV weighting minus the final-step answer on
    the same samples (a paired bootstrap 95% interval), and the mean TSE of wrong minus correct samples (an
    unpaired one; absent when every sample is right or every one wrong)."""
    out = []
    keys = [k for k in ("decoder", "task", "gen_length") if k in records]
    for key, group in records.groupby(keys, sort=True):
        row: dict[str, Any] = dict(zip(keys, key if isinstance(key, tuple) else (key,), strict=True))
        group = group.sort_values("sample_id")
        final = group["final_correct"].astype(bool)
        row["samples"] = len(group)
        for w in WEIGHTINGS:
            if f"vote_{w}_correct" in group:
                row[f"tcv_{w}"] = paired_bootstrap(group[f"vote_{w}_correct"].astype(float), final.astype(float))
        if final.any() and not final.all():
            row["tse_gap"] = group_bootstrap(group.loc[~final, "tse"], group.loc[final, "tse"])
        out.append(row)
    return out


def temporal_intervals_table(records: pd.DataFrame) -> str:
    """Markdown of :func:`temporal_differences`: does voting over the steps beat the final answer, and is TSE
    higher for wrong answers, each with its 95% interval ("not resolved" when it covers zero)."""
    rows = temporal_differences(records)
    with_decoder = len({r.get("decoder") for r in rows}) > 1
    text_columns = ["task", *(["decoder"] if with_decoder else [])]
    head = [*text_columns, "L", "samples", *(f"TCV {w} - final [95% CI]" for w in WEIGHTINGS),
            "TSE wrong - correct [95% CI]"]
    lines = ["| " + " | ".join(head) + " |",
             "|" + "---|" * len(text_columns) + "---:|" * (len(head) - len(text_columns))]
    for r in sorted(rows, key=lambda r: (r["task"], str(r.get("decoder", "")), r.get("gen_length", 0))):
        cells = [r["task"], *([str(r.get("decoder", ""))] if with_decoder else []), str(r.get("gen_length", "-")),
                 str(r["samples"]), *(r[f"tcv_{w}"].cell() if f"tcv_{w}" in r else "-" for w in WEIGHTINGS),
                 r["tse_gap"].cell() if "tse_gap" in r else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compare_runs_table(first: pd.DataFrame, second: pd.DataFrame, labels: tuple[str, str] = ("A", "B")) -> str:
    """Two runs' temporal records side by side, per task and length, on the samples both decoded: final-step
    accuracy, TCV (exp), EverPass and mean TSE of each, and the second minus the first in final accuracy with a
    paired bootstrap 95% interval (same problems). E.g. the same evaluation with ``decoder=semi_ar`` and ``med``."""
    a, b = labels
    lines = [f"| task | L | samples | final {a} | final {b} | {b} - {a} [95% CI] | TCV exp {a} | TCV exp {b} | "
             f"EverPass {a} | EverPass {b} | TSE {a} | TSE {b} |", "|---|---:|---:|" + "---:|" * 9]
    keys = ["task", "gen_length", "sample_id"]
    both = first.merge(second, on=keys, suffixes=("_a", "_b"))
    if both.empty:
        return f"No sample of {a} was decoded by {b} too (same task, length and sample id): nothing to pair."
    for (task, length), group in both.groupby(["task", "gen_length"], sort=True):
        delta = paired_bootstrap(group["final_correct_b"].astype(float), group["final_correct_a"].astype(float))
        cells = [str(task), str(length), str(len(group))]
        cells += [_cell(group[f"final_correct_{s}"].mean()) for s in "ab"] + [delta.cell()]
        for column in ("vote_exp_correct", "ever_correct", "tse"):
            cells += [_cell(group[f"{column}_{s}"].astype(float).mean()) if f"{column}_{s}" in group else "-"
                      for s in "ab"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
