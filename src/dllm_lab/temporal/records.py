"""Per-sample temporal records and their read-back from MLflow (Time Is a Feature, arXiv 2508.09138).

- Per-sample records: one row per sample (its answer and correctness at every step, the TCV votes, TSE,
  confidence), written as parquet (``temporal/<task>.parquet`` in the run's artifacts).
- :func:`load_temporal_run` / :func:`latest_temporal_run`: read a run (or a sweep's child runs) back from
  MLflow, for the notebook and the study report.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient

    from dllm_lab.temporal.callback import TemporalSample

TEMPORAL_TAG = "temporal"  # MLflow tag ("true") on runs with temporal artifacts (and sweep parents)
STUDY_EXPERIMENT = "dllm-lab/temporal_voting"


def results_from_metrics(metrics: dict[str, Any], task_names: list[str],
                         prefix: str = "eval") -> dict[str, dict[str, float]]:
    """Per-task results from flat ``<prefix>/<task>/<metric>`` values (``trainer.callback_metrics``, an MLflow
    run's metrics): every metric logged for a task that has ``accuracy``."""
    out: dict[str, dict[str, float]] = {}
    for t in task_names:
        head = f"{prefix}/{t}/"
        if f"{head}accuracy" not in metrics:
            continue
        names = {k: k[len(head):] for k in metrics if k.startswith(head)}
        out[t] = {m: float(metrics[k]) for k, m in names.items() if "/" not in m}
    return out


# -- per-sample records -------------------------------------------------------------------------------
def _text(answer: Any) -> str | None:
    return None if answer is None else str(answer)


def temporal_records(
    samples: Sequence[TemporalSample], task: str, sample_ids: Sequence[int], gen_length: int
) -> list[dict[str, Any]]:
    """One flat row per sample (answers as strings, ``None`` = no answer), ready for parquet."""
    rows = []
    for sid, s in zip(sample_ids, samples, strict=True):
        correct = [bool(c) for c in (s.correct or [False] * len(s.answers))]
        row: dict[str, Any] = {
            "sample_id": int(sid), "task": task, "gen_length": int(gen_length), "num_steps": len(s.answers),
            "steps": [int(x) for x in s.steps], "step_answers": [_text(a) for a in s.answers],
            "step_correct": correct, "final_answer": _text(s.final_answer), "final_correct": correct[-1],
            "ever_correct": any(correct), "correct_then_wrong": any(correct) and not correct[-1],
            "answer_changes": int(s.answer_changes), "tse": float(s.tse), "confidence": float(s.confidence),
        }
        for w, vote in s.votes.items():
            row[f"vote_{w}"] = _text(vote)
            row[f"vote_{w}_correct"] = bool((s.vote_correct or {}).get(w, False))
        rows.append(row)
    return rows


def write_records(rows: list[dict[str, Any]], path: str | Path) -> Path:
    """Rows of :func:`temporal_records` as a parquet file with explicit types (lists of nullable strings
    stay ``list<string>`` even when no step parsed), sorted by ``sample_id``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {
        "sample_id": pa.int64(), "task": pa.string(), "gen_length": pa.int32(), "num_steps": pa.int32(),
        "steps": pa.list_(pa.int32()), "step_answers": pa.list_(pa.string()), "step_correct": pa.list_(pa.bool_()),
        "final_answer": pa.string(), "final_correct": pa.bool_(), "ever_correct": pa.bool_(),
        "correct_then_wrong": pa.bool_(), "answer_changes": pa.int32(), "tse": pa.float64(),
        "confidence": pa.float64(),
    }
    names = list(types) + [k for k in (rows[0] if rows else {}) if k not in types]
    schema = pa.schema([(n, types.get(n, pa.bool_() if n.endswith("_correct") else pa.string())) for n in names])
    table = pa.Table.from_pylist(sorted(rows, key=lambda r: r["sample_id"]), schema=schema)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, compression="zstd")
    return path


def read_records(paths: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """The records of one or more parquet files as one DataFrame (list columns as Python lists)."""
    import pandas as pd

    files = [paths] if isinstance(paths, (str, Path)) else list(paths)
    frames = [pd.read_parquet(p) for p in files]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    for col in ("steps", "step_answers", "step_correct"):
        if col in frame:
            frame[col] = frame[col].map(list)
    for col in [c for c in frame if c == "final_answer" or (c.startswith("vote_") and not c.endswith("_correct"))]:
        frame[col] = frame[col].astype(object).where(frame[col].notna(), None)  # no answer: None, as in the lists
    return frame


# -- reading runs back from MLflow -----------------------------------------------------------------------
@dataclass
class TemporalRun:
    """A run's temporal data: ``records`` (one row per sample and setting) and ``rows`` (per task and
    setting: ``task``, ``gen_length``, ``decoder`` when known, and the logged ``eval/<task>/*`` metrics)."""

    run_id: str
    records: pd.DataFrame
    rows: list[dict[str, Any]]


def latest_temporal_run(client: MlflowClient, experiment_name: str | None = STUDY_EXPERIMENT) -> str:
    """The newest top-level run tagged ``temporal=true`` in ``experiment_name`` (falls back to every
    experiment when that one has none)."""
    for wanted in ([experiment_name] if experiment_name else []) + [None]:  # None: every experiment
        ids = [e.experiment_id for e in client.search_experiments() if wanted is None or e.name == wanted]
        if not ids:
            continue
        runs = client.search_runs(ids, f"tags.{TEMPORAL_TAG} = 'true'", order_by=["attributes.start_time DESC"])
        top = [r for r in runs if "mlflow.parentRunId" not in r.data.tags] or runs
        if top:
            return top[0].info.run_id
    raise LookupError(
        "no MLflow run with temporal artifacts found; run `dllm-eval experiment=temporal_voting` (or any "
        "dllm-eval with temporal.enabled=true), or pass a run id"
    )


def load_temporal_run(client: MlflowClient, run_id: str, dst: str | Path | None = None) -> TemporalRun:
    """Download ``temporal/*.parquet`` of ``run_id`` (or of its child runs, for a sweep parent) into ``dst``
    and rebuild the per-task rows from the runs' metrics."""
    import pandas as pd

    dst = Path(dst or tempfile.mkdtemp(prefix="temporal-"))
    run = client.get_run(run_id)
    children = client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run_id}'", order_by=["attributes.start_time ASC"]
    )
    frames, rows = [], []
    for r in children or [run]:
        files = [a.path for a in client.list_artifacts(r.info.run_id, "temporal") if a.path.endswith(".parquet")]
        if not files:
            continue
        local = [client.download_artifacts(r.info.run_id, f, str(dst / r.info.run_id)) for f in files]
        records = read_records(local)
        decoder = r.data.tags.get("decoder")
        if decoder:
            records["decoder"] = decoder
        frames.append(records)
        lengths = records.groupby("task")["gen_length"].first().to_dict()
        for task, values in results_from_metrics(r.data.metrics, list(lengths)).items():
            rows.append({**({"decoder": decoder} if decoder else {}), "gen_length": int(lengths[task]),
                         "task": task, **values})
    if not frames:
        raise LookupError(f"run {run_id} (and its child runs) has no temporal/*.parquet artifacts")
    return TemporalRun(run_id, pd.concat(frames, ignore_index=True), rows)
