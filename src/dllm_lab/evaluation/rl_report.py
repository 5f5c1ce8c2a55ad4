"""The RL study table (experiments/rl/): per arm, evaluation set and decoder, greedy accuracy after RL over seeds
(mean and spread) and its change from the base model on the same held-out problems, with a 95% interval that
resamples seeds and problems (:func:`~dllm_lab.evaluation.stats.seed_problem_bootstrap`).

Reads the MLflow runs of ``dllm-lab/rl_base`` (the base model: ``dllm-eval experiment=rl_base``) and of the arms
(``dllm-lab/rl_*`` train runs with ``eval_after_fit``). Each run's per-problem correctness comes from its
``predictions/<set>.jsonl`` artifacts (the run's decoder) and ``eval_<name>/predictions/<set>.jsonl`` (each of
its ``eval_decoders``: the few-step EOSER + ASS decoder of CJ-GRPO's claim). A seed run more than once counts
with its newest finished run; the runs pooled go to ``per_problem.json`` and come back from it next time
(:mod:`dllm_lab.evaluation.study_runs`), so the study resumes across stores and sittings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dllm_lab.evaluation.dashboard import ledger_runs, study_dashboard
from dllm_lab.evaluation.stats import Interval, mean_sd
from dllm_lab.evaluation.study_runs import paired_rows, plot_vs_base, pooled_runs

BASE = "rl_base"
ARMS = ("rl_countdown", "rl_tse", "rl_tse_acc", "rl_cj_grpo", "rl_countdown_lora", "rl_countdown_t12")
ARM_LABELS = {
    "rl_countdown": "diffu-GRPO, accuracy reward (d1)",
    "rl_tse": "diffu-GRPO, -TSE reward (TCR)",
    "rl_tse_acc": "diffu-GRPO, TSE + accuracy (TCR spherical)",
    "rl_cj_grpo": "CJ-GRPO (trajectory), accuracy reward",
    "rl_countdown_lora": "d1 arm, LoRA r32 at lr 5e-4 (recipe candidate)",
    "rl_countdown_t12": "d1 arm, rollout T=1.2 (recipe candidate)",
}
SET_LABELS = {"countdown": "synthetic held-out", "countdown.d1": "cd3-style file (d1 jsonl)"}


def _decoder_and_set(name: str) -> tuple[str, str]:
    """``eval_few_step/countdown.d1`` -> (``few_step``, ``countdown.d1``); ``countdown`` -> (``run``, ...)."""
    if "/" in name:
        prefix, set_name = name.split("/", 1)
        return prefix.removeprefix("eval_"), set_name
    return "run", name


def study_rows(found: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (arm, decoder, set): seeds, accuracy after RL per seed, and the change from the base."""
    rows = paired_rows(found, BASE, ARMS, "dllm-eval experiment=rl_base")
    for row in rows:
        row["decoder"], row["set"] = _decoder_and_set(row["task"])
    return sorted(rows, key=lambda r: (r["decoder"] != "run", r["decoder"], r["set"], ARMS.index(r["arm"])))


def study_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| arm | decoder | eval set | seeds | problems | before (base) | after (mean ± sd over seeds) | "
             "change [95% CI] | min/run |",
             "|---|---|---|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        decoder = "the run's (semi-AR, greedy)" if r["decoder"] == "run" else r["decoder"]
        seeds, change = ",".join(map(str, r["seeds"])), Interval(r["delta"], r["low"], r["high"]).cell()
        lines.append(f"| {ARM_LABELS.get(r['arm'], r['arm'])} | {decoder} | {SET_LABELS.get(r['set'], r['set'])} | "
                     f"{seeds} | {r['problems']} | {r['base']:.3f} | {mean_sd(r['accuracy'])} | {change} | "
                     f"{r['minutes']:.1f} |")
    return "\n".join(lines)


def write_report(tracking_uri: str, output_dir: str | Path) -> str:
    """Pool the runs, write ``results.md``, ``results.json``, ``per_problem.json`` and ``vs_base.png`` (each arm's
    change from the base with its interval, one panel per decoder and set); returns the table."""
    out = Path(output_dir)
    found = pooled_runs(tracking_uri, out, (BASE, *ARMS))
    rows = study_rows(found) if found else []
    if not rows:
        raise RuntimeError(f"no finished RL study runs in {tracking_uri}; run `make rl-study` (dllm-eval "
                           "experiment=rl_base, then dllm-train -m seed=0,1,2 "
                           "experiment=rl_countdown,rl_tse,rl_tse_acc,rl_cj_grpo) first")
    table = study_table(rows)
    note = ("\n\nChanges are against the base model (`rl_base`) on the same problems: the mean over seeds and "
            "problems, with a 95% interval from resampling seeds, then problems (10,000 resamples). \"not "
            "resolved\": the interval covers 0.\n")
    (out / "results.md").write_text(table + note)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    plot_vs_base(rows, out / "vs_base.png", ARM_LABELS, study="rl")
    study_dashboard(tracking_uri, out, "rl", filter_string="tags.study = 'rl'", baseline=BASE,
                    home=f"dllm-lab/{BASE}", ledger=ledger_runs(found, BASE))
    return table
