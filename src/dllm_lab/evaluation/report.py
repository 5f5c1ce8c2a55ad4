"""Results tables."""

from __future__ import annotations

from typing import Any

METRICS = ("accuracy", "parse_rate", "nfe", "tokens_per_s", "samples")


def format_table(results: dict[str, dict[str, float]]) -> str:
    """A Markdown results table: task, samples, accuracy, parse rate, NFE, generated tokens/s."""
    lines = ["| task | samples | accuracy | parsed | NFE | tokens/s |", "|---|---:|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines.append(
            f"| {name} | {int(r['samples'])} | {r['accuracy']:.3f} | {r['parse_rate']:.3f} | "
            f"{r['nfe']:.1f} | {r['tokens_per_s']:.0f} |"
        )
    return "\n".join(lines)


def results_from_metrics(metrics: dict[str, Any], task_names: list[str]) -> dict[str, dict[str, float]]:
    """Rebuild per-task results from flat ``eval/<task>/<metric>`` values (e.g. trainer.callback_metrics)."""
    return {
        t: {m: float(metrics[f"eval/{t}/{m}"]) for m in METRICS if f"eval/{t}/{m}" in metrics}
        for t in task_names
        if f"eval/{t}/accuracy" in metrics
    }
