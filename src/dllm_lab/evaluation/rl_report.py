"""The RL study table: greedy accuracy before and after RL per arm, mean and spread over seeds.

Reads the MLflow runs of the study's experiments (``dllm-lab/<task_name>`` of each ``rl_*`` arm):
``val/<task>/accuracy`` at step 0 (``validate_before_fit``) is the accuracy before RL and
``eval/<task>/accuracy`` (``eval_after_fit``) the accuracy after. Runs are grouped by the model they
started from, and a seed that was run more than once counts with its newest run only, so a rerun of the
study (or of one seed) replaces the old numbers instead of being averaged with them.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from dllm_lab.evaluation.stats import mean_sd

ARMS = ("rl_countdown", "rl_tse", "rl_tse_acc", "rl_cj_grpo")
ARM_LABELS = {
    "rl_countdown": "diffu-GRPO, accuracy reward (d1)",
    "rl_tse": "diffu-GRPO, -TSE reward (TCR)",
    "rl_tse_acc": "diffu-GRPO, TSE + accuracy (TCR spherical)",
    "rl_cj_grpo": "CJ-GRPO + EOSER + ASS, accuracy reward",
}


def collect_runs(tracking_uri: str, arms: tuple[str, ...] = ARMS) -> list[dict[str, Any]]:
    """One row per (arm, task, model, seed), from its newest finished run: accuracy before/after, wall time
    (minutes); ``model`` is the last path component of ``model.name_or_path``."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    newest: dict[tuple, dict[str, Any]] = {}
    for arm in arms:
        experiment = client.get_experiment_by_name(f"dllm-lab/{arm}")
        if experiment is None:
            continue
        for run in client.search_runs(experiment.experiment_id, "attributes.status = 'FINISHED'"):
            tasks = [k.split("/")[1] for k in run.data.metrics if k.startswith("eval/") and k.endswith("/accuracy")]
            if len(tasks) != 1:
                continue  # not a single-task RL run
            task = tasks[0]
            before = [m for m in client.get_metric_history(run.info.run_id, f"val/{task}/accuracy") if m.step == 0]
            after = run.data.metrics[f"eval/{task}/accuracy"]
            if not before:
                continue  # fast-dev or interrupted runs lack the accuracy before RL
            model = str(run.data.params.get("model.name_or_path", "?")).rstrip("/").rsplit("/", 1)[-1]
            row = {
                "arm": arm, "task": task, "model": model, "seed": int(run.data.params.get("seed", -1)),
                "before": before[0].value, "after": after,
                "minutes": (run.info.end_time - run.info.start_time) / 60_000, "run_id": run.info.run_id,
                "start_time": run.info.start_time,
            }
            key = (arm, task, model, row["seed"])
            if key not in newest or row["start_time"] > newest[key]["start_time"]:
                newest[key] = row
    return list(newest.values())



def study_table(rows: list[dict[str, Any]]) -> str:
    """Markdown: per arm, seeds, accuracy before, after (mean ± sample std over seeds), change, minutes."""
    lines = [
        "| arm | task | model | seeds | accuracy before | accuracy after | change | min/run |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    for arm, task, model in dict.fromkeys((r["arm"], r["task"], r["model"]) for r in rows):
        mine = [r for r in rows if (r["arm"], r["task"], r["model"]) == (arm, task, model)]
        before = [r["before"] for r in mine]
        after = [r["after"] for r in mine]
        change = [r["after"] - r["before"] for r in mine]
        seeds = ",".join(str(s) for s in sorted(r["seed"] for r in mine))
        lines.append(
            f"| {ARM_LABELS.get(arm, arm)} | {task} | {model} | {seeds} | {mean_sd(before)} | {mean_sd(after)} | "
            f"{mean_sd(change)} | {statistics.mean(r['minutes'] for r in mine):.1f} |"
        )
    return "\n".join(lines)


def write_report(tracking_uri: str, output_dir: str | Path) -> str:
    """Collect the runs, write ``results.md`` and ``runs.csv`` to ``output_dir``; returns the table."""
    import pandas as pd

    rows = collect_runs(tracking_uri)
    if not rows:
        raise RuntimeError(
            f"no finished RL study runs in {tracking_uri}; run `make rl-study` (or dllm-train -m "
            "experiment=rl_countdown,rl_tse,rl_tse_acc,rl_cj_grpo seed=0,1,2) first"
        )
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    table = study_table(rows)
    (out / "results.md").write_text(table + "\n")
    frame = pd.DataFrame(rows).drop(columns="start_time").sort_values(["arm", "task", "model", "seed"])
    frame.to_csv(out / "runs.csv", index=False)
    return table
