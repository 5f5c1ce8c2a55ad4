"""The posterior SFT study table (experiments/posterior_sft/): per arm and task, greedy accuracy over seeds
(mean and spread) and its difference from the base model on the same held-out problems, with a 95% interval
that resamples seeds and problems (:func:`~dllm_lab.evaluation.stats.seed_problem_bootstrap`).

Reads the MLflow runs of ``dllm-lab/psft_base`` (the base model, an eval run) and of the arms
(``dllm-lab/psft_*`` train runs with ``eval_after_fit``); each run's per-problem correctness comes from its
``predictions/<task>.jsonl`` artifact. A seed run more than once counts with its newest finished run.

Every report also writes what it pooled to ``per_problem.json`` beside the table, and pools that file back in
on the next call, so the study resumes across MLflow stores and sittings: a fresh clone (no ``mlflow.db``)
that runs the missing seeds gets the whole table. A run found in MLflow replaces the file's entry for the
same (arm, seed).
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Any

from dllm_lab.evaluation.stats import Interval, mean_sd, seed_problem_bootstrap

BASE = "psft_base"
ARMS = ("psft_posterior", "psft_unfiltered", "psft_gold")
ARM_LABELS = {
    "psft_base": "base model (shipped)",
    "psft_posterior": "posterior SFT (ll >= log 0.5)",
    "psft_unfiltered": "posterior SFT, no filter",
    "psft_gold": "SFT on the generator's gold reasoning",
}


def _correct_by_task(client, run) -> dict[str, dict[int, float]]:
    import tempfile

    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for item in client.list_artifacts(run.info.run_id, "predictions"):
            if not item.path.endswith(".jsonl"):
                continue
            path = Path(client.download_artifacts(run.info.run_id, item.path, tmp))
            rows = [json.loads(line) for line in path.read_text().splitlines() if line]
            out[path.stem] = {int(r["sample_id"]): float(r["correct"]) for r in rows}
    return out


def collect_runs(tracking_uri: str, arms: tuple[str, ...] = (BASE, *ARMS)) -> dict[str, dict[int, dict[str, Any]]]:
    """``arm -> seed -> {"correct": task -> sample_id -> 0/1, "minutes", "run_id", "kept_fraction"}`` from each
    (arm, seed)'s newest finished run."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    found: dict[str, dict[int, dict[str, Any]]] = {}
    for arm in arms:
        experiment = client.get_experiment_by_name(f"dllm-lab/{arm}")
        if experiment is None:
            continue
        runs = client.search_runs(experiment.experiment_id, "attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"])
        for run in runs:
            seed = int(run.data.params.get("seed", -1))
            fast_dev = run.data.params.get("trainer.fast_dev_run") == "True"
            if fast_dev or seed in found.get(arm, {}):
                continue
            correct = _correct_by_task(client, run)
            if not correct:
                continue
            found.setdefault(arm, {})[seed] = {
                "correct": correct, "run_id": run.info.run_id,
                "minutes": (run.info.end_time - run.info.start_time) / 60_000,
                "kept_fraction": run.data.metrics.get("train/kept_fraction"),
            }
    return found



LEDGER = "per_problem.json"


def load_ledger(path: str | Path) -> dict[str, dict[int, dict[str, Any]]]:
    """``collect_runs``'s structure from a ``per_problem.json`` (JSON keys back to ints); empty if absent."""
    path = Path(path)
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {arm: {int(seed): {**run, "correct": {task: {int(i): float(c) for i, c in ids.items()}
                                                 for task, ids in run["correct"].items()}}
                  for seed, run in seeds.items()}
            for arm, seeds in raw.items()}


def merge_runs(*sources: dict[str, dict[int, dict[str, Any]]]) -> dict[str, dict[int, dict[str, Any]]]:
    """Later sources win for the same (arm, seed)."""
    merged: dict[str, dict[int, dict[str, Any]]] = {}
    for source in sources:
        for arm, seeds in source.items():
            merged.setdefault(arm, {}).update(seeds)
    return merged


def study_rows(found: dict[str, dict[int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """One row per (arm, task): seeds, accuracy per seed, and the difference from the base with its interval."""
    if BASE not in found:
        raise RuntimeError("no finished base-model run: run `dllm-eval experiment=psft_base` first")
    base = next(iter(found[BASE].values()))["correct"]
    rows = []
    for arm in (a for a in ARMS if a in found):
        for task, base_correct in base.items():
            seeds = sorted(s for s, r in found[arm].items() if task in r["correct"])
            if not seeds:
                continue
            ids = sorted(set(base_correct).intersection(*(found[arm][s]["correct"][task] for s in seeds)))
            per_seed = [[found[arm][s]["correct"][task][i] for i in ids] for s in seeds]
            interval = seed_problem_bootstrap(per_seed, [base_correct[i] for i in ids])
            rows.append({
                "arm": arm, "task": task, "seeds": seeds, "problems": len(ids),
                "base": sum(base_correct[i] for i in ids) / len(ids),
                "accuracy": [sum(values) / len(values) for values in per_seed],
                "delta": interval.estimate, "low": interval.low, "high": interval.high,
                "minutes": statistics.mean(found[arm][s]["minutes"] for s in seeds),
            })
    return rows


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
    """Collect the runs, write ``results.md`` and ``results.json`` to ``output_dir``; returns the table."""
    out = Path(output_dir)
    found = merge_runs(load_ledger(out / LEDGER), collect_runs(tracking_uri))
    rows = study_rows(found) if found else []
    if not rows:
        raise RuntimeError(f"no finished posterior SFT study runs in {tracking_uri}; run `dllm-train -m "
                           "experiment=psft_posterior,psft_unfiltered,psft_gold seed=0,1,2` first")
    out.mkdir(parents=True, exist_ok=True)
    (out / LEDGER).write_text(json.dumps(found, sort_keys=True, separators=(",", ":")) + "\n")
    table = study_table(rows)
    note = ("\n\nDifferences are against the base model on the same problems: the mean over seeds and problems, "
            "with a 95% interval from resampling seeds, then problems (10,000 resamples). \"not resolved\": the "
            "interval covers 0.\n")
    (out / "results.md").write_text(table + note)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    return table
