"""What the training-study reports share: each (arm, seed)'s newest finished MLflow run with its per-problem
correctness, and a committed per-problem file (``per_problem.json``) that keeps them across stores.

A study's runs outlive one ``mlflow.db``: every report writes what it pooled to ``per_problem.json`` beside its
table and pools that file back in on the next call, so a fresh clone that runs the missing seeds still gets the
whole table. A run found in MLflow replaces the file's entry for the same (arm, seed).

The structure everywhere: ``arm -> seed -> {"correct": set -> sample_id -> 0/1, "minutes", "run_id", ...}``,
where a *set* is ``<task>`` for the run's own decoder and ``<prefix>/<task>`` for a further one (``eval_decoders``).
"""

from __future__ import annotations

import json
import statistics
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

LEDGER = "per_problem.json"
Runs = dict[str, dict[int, dict[str, Any]]]


def correct_by_set(client, run) -> dict[str, dict[int, float]]:
    """Per-problem correctness of every ``[<prefix>/]predictions/<task>.jsonl`` artifact of ``run``."""
    out: dict[str, dict[int, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folders = [("", "predictions")] + [(item.path + "/", f"{item.path}/predictions")
                                          for item in client.list_artifacts(run.info.run_id)
                                          if item.is_dir and item.path.startswith("eval_")]
        for label, folder in folders:
            for item in client.list_artifacts(run.info.run_id, folder):
                if not item.path.endswith(".jsonl"):
                    continue
                path = Path(client.download_artifacts(run.info.run_id, item.path, tmp))
                rows = [json.loads(line) for line in path.read_text().splitlines() if line]
                out[label + path.stem] = {int(r["sample_id"]): float(r["correct"]) for r in rows}
    return out


def newest_runs(tracking_uri: str, arms: Iterable[str],
                extra: Callable[[Any], dict[str, Any]] | None = None) -> Runs:
    """Each (arm, seed)'s newest finished, non-fast-dev run of ``dllm-lab/<arm>`` that logged predictions;
    ``extra(run)`` adds fields of its own (a study's metrics)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri)
    found: Runs = {}
    for arm in arms:
        experiment = client.get_experiment_by_name(f"dllm-lab/{arm}")
        if experiment is None:
            continue
        runs = client.search_runs(experiment.experiment_id, "attributes.status = 'FINISHED'",
                                  order_by=["attributes.start_time DESC"])
        for run in runs:
            seed = int(run.data.params.get("seed", -1))
            if run.data.params.get("trainer.fast_dev_run") == "True" or seed in found.get(arm, {}):
                continue
            correct = correct_by_set(client, run)
            if not correct:
                continue
            found.setdefault(arm, {})[seed] = {
                "correct": correct, "run_id": run.info.run_id,
                "minutes": (run.info.end_time - run.info.start_time) / 60_000,
                **(extra(run) if extra else {}),
            }
    return found


def load_ledger(path: str | Path) -> Runs:
    """:data:`Runs` from a ``per_problem.json`` (JSON keys back to ints); empty if absent."""
    path = Path(path)
    if not path.exists():
        return {}
    raw = json.loads(path.read_text())
    return {arm: {int(seed): {**run, "correct": {name: {int(i): float(c) for i, c in ids.items()}
                                                 for name, ids in run["correct"].items()}}
                  for seed, run in seeds.items()}
            for arm, seeds in raw.items()}


def merge_runs(*sources: Runs) -> Runs:
    """Later sources win for the same (arm, seed)."""
    merged: Runs = {}
    for source in sources:
        for arm, seeds in source.items():
            merged.setdefault(arm, {}).update(seeds)
    return merged


def pooled_runs(tracking_uri: str, output_dir: str | Path, arms: Iterable[str],
                extra: Callable[[Any], dict[str, Any]] | None = None) -> Runs:
    """The ledger in ``output_dir`` merged with the runs in MLflow, written back to the ledger."""
    out = Path(output_dir)
    found = merge_runs(load_ledger(out / LEDGER), newest_runs(tracking_uri, arms, extra))
    if found:
        out.mkdir(parents=True, exist_ok=True)
        (out / LEDGER).write_text(json.dumps(found, sort_keys=True, separators=(",", ":")) + "\n")
    return found


def paired_rows(found: Runs, base_arm: str, arms: Iterable[str], base_command: str) -> list[dict[str, Any]]:
    """One row per (arm, set) against the base model on the same problems: seeds, accuracy per seed, and the
    mean difference with a 95% interval that resamples seeds, then problems
    (:func:`~dllm_lab.evaluation.stats.seed_problem_bootstrap`). ``base_command`` names how to make the base run."""
    from dllm_lab.evaluation.stats import seed_problem_bootstrap

    if base_arm not in found:
        raise RuntimeError(f"no finished base-model run ({base_arm}): run `{base_command}` first")
    base = next(iter(found[base_arm].values()))["correct"]
    rows = []
    for arm in (a for a in arms if a in found):
        for name, base_correct in base.items():
            seeds = sorted(s for s, r in found[arm].items() if name in r["correct"])
            if not seeds:
                continue
            ids = sorted(set(base_correct).intersection(*(found[arm][s]["correct"][name] for s in seeds)))
            if not ids:
                continue
            per_seed = [[found[arm][s]["correct"][name][i] for i in ids] for s in seeds]
            interval = seed_problem_bootstrap(per_seed, [base_correct[i] for i in ids])
            rows.append({
                "arm": arm, "task": name, "seeds": seeds, "problems": len(ids),
                "base": sum(base_correct[i] for i in ids) / len(ids),
                "accuracy": [sum(values) / len(values) for values in per_seed],
                "delta": interval.estimate, "low": interval.low, "high": interval.high,
                "minutes": statistics.mean(found[arm][s]["minutes"] for s in seeds),
            })
    return rows


def plot_vs_base(rows: list[dict[str, Any]], path: Path, labels: dict[str, str], study: str | None = None) -> Path:
    """:func:`paired_rows` as :func:`~dllm_lab.evaluation.figures.plot_differences` draws them: each arm's difference
    from the base with its interval, one panel per set, one colour per arm
    (:func:`~dllm_lab.evaluation.palette.preset_color`); ``labels`` names the arms, ``study`` the study in the title."""
    from dllm_lab.evaluation.figures import plot_differences

    return plot_differences([{**r, "delta_low": r["low"], "delta_high": r["high"]} for r in rows], path,
                            label=lambda r: labels.get(r["arm"], r["arm"]), baseline="base model", study=study,
                            color_key=lambda r: r["arm"])
