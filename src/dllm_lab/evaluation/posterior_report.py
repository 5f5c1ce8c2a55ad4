"""The posterior SFT study table (experiments/posterior_sft/): per arm and task, greedy accuracy over seeds
(mean and spread) and its difference from the base model on the same held-out problems, with a 95% interval
that resamples seeds and problems (:func:`~dllm_lab.evaluation.stats.seed_problem_bootstrap`).

Reads the MLflow runs of ``dllm-lab/psft_base`` (the base model, an eval run) and of the arms
(``dllm-lab/psft_*`` train runs with ``eval_after_fit``); each run's per-problem correctness comes from its
``predictions/<task>.jsonl`` artifact. A seed run more than once counts with its newest finished run.

The runs pooled go to ``per_problem.json`` beside the table and come back from it on the next call
(:mod:`dllm_lab.evaluation.study_runs`), so the study resumes across MLflow stores and sittings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dllm_lab.evaluation.dashboard import ledger_runs, study_dashboard
from dllm_lab.evaluation.stats import Interval, mean_sd
from dllm_lab.evaluation.study_runs import paired_rows, plot_vs_base, pooled_runs

BASE = "psft_base"
ARMS = ("psft_posterior", "psft_unfiltered", "psft_gold")
ARM_LABELS = {
    "psft_base": "base model (shipped)",
    "psft_posterior": "posterior SFT (ll >= log 0.5)",
    "psft_unfiltered": "posterior SFT, no filter",
    "psft_gold": "SFT on the generator's gold reasoning",
}


def _kept_fraction(run) -> dict[str, Any]:
    return {"kept_fraction": run.data.metrics.get("train/kept_fraction")}


def study_rows(found: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (arm, task): seeds, accuracy per seed, and the difference from the base with its interval."""
    return paired_rows(found, BASE, ARMS, "dllm-eval experiment=psft_base")


def study_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| arm | task | seeds | problems | base | accuracy (mean ± sd over seeds) | vs base [95% CI] | min/run |",
             "|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        seeds = ",".join(map(str, r["seeds"]))
        lines.append(f"| {ARM_LABELS.get(r['arm'], r['arm'])} | {r['task']} | {seeds} | {r['problems']} | "
                     f"{r['base']:.3f} | {mean_sd(r['accuracy'])} | "
                     f"{Interval(r['delta'], r['low'], r['high']).cell()} | {r['minutes']:.1f} |")
    return "\n".join(lines)


def write_report(tracking_uri: str, output_dir: str | Path) -> str:
    """Collect the runs, write ``results.md``, ``results.json`` and ``vs_base.png`` (each arm's difference from the
    base with its interval) to ``output_dir``; returns the table."""
    out = Path(output_dir)
    found = pooled_runs(tracking_uri, out, (BASE, *ARMS), _kept_fraction)
    rows = study_rows(found) if found else []
    if not rows:
        raise RuntimeError(f"no finished posterior SFT study runs in {tracking_uri}; run `dllm-train -m "
                           "experiment=psft_posterior,psft_unfiltered,psft_gold seed=0,1,2` first")
    table = study_table(rows)
    note = ("\n\nDifferences are against the base model on the same problems: the mean over seeds and problems, "
            "with a 95% interval from resampling seeds, then problems (10,000 resamples). \"not resolved\": the "
            "interval covers 0.\n")
    (out / "results.md").write_text(table + note)
    plot_vs_base(rows, out / "vs_base.png", ARM_LABELS, study="posterior_sft")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    study_dashboard(tracking_uri, out, "posterior_sft", filter_string="tags.study = 'posterior_sft'", baseline=BASE,
                    home=f"dllm-lab/{BASE}", ledger=ledger_runs(found, BASE))
    return table
