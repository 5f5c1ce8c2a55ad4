"""Where real examples come from: a local jsonl/json/csv/parquet file, or a Hugging Face dataset id."""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

LOCAL_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


Located = tuple[str, Any]  # ("line 7", row): where a row sits in its source, for warnings a user can follow


def _read_local(path: Path) -> Iterator[Located]:
    """Rows of a local file, each with its place: the file's line number for jsonl and csv, the item or
    row index for json and parquet."""
    if path.suffix == ".jsonl":
        with path.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield f"line {lineno}", json.loads(line)
                    except json.JSONDecodeError as err:
                        yield f"line {lineno}", {"__error__": f"invalid JSON ({err.msg})"}
    elif path.suffix == ".json":
        data = json.loads(path.read_text(encoding="utf-8"))
        items = data if isinstance(data, list) else data.get("data", [])
        yield from ((f"item {i}", row) for i, row in enumerate(items, 1))
    elif path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            for row in reader:
                yield f"line {reader.line_num}", row
    else:
        import pyarrow.parquet as pq

        yield from ((f"row {i}", row) for i, row in enumerate(pq.read_table(path).to_pylist(), 1))


def _read_hub(hf_id: str, config: str | None, split: str) -> Iterator[Located]:
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is a core dependency
        raise ImportError("loading hub datasets needs `pip install datasets`") from err
    yield from ((f"row {i}", row) for i, row in enumerate(datasets.load_dataset(hf_id, config, split=split), 1))


class RowValidator(Protocol):
    """What :func:`load_examples` needs of a task (:class:`dllm_lab.tasks.Task` is one)."""

    name: str

    def validate_rows(self, rows: Iterator[Located], origin: str) -> Iterator[dict[str, Any]]: ...


def is_local_source(source: str) -> bool:
    """Whether ``source`` names a local file (a data-file suffix, or an existing path) rather than a hub id."""
    path = Path(source).expanduser()
    return path.suffix in LOCAL_SUFFIXES or path.exists()


def load_examples(
    task: RowValidator, split: str = "test", source: str | None = None, limit: int | None = None
) -> list[dict[str, Any]]:
    """Validated examples of ``task``: malformed rows are skipped with a warning naming the row.

    ``source`` is a local file (``.jsonl``, ``.json``, ``.csv``, ``.parquet``) or a hub dataset id;
    ``None`` means the task's default hub id. Hub access needs network (not available offline).
    ``limit`` keeps the first ``limit`` valid examples (``None``: all).
    """
    if limit is not None and limit < 0:
        raise ValueError(f"limit={limit} must be >= 0 (or None for all rows)")
    source = source or getattr(task, "hf_id", None)
    if source is None:
        raise ValueError(
            f"task {task.name!r} has no default dataset; pass source=<path.jsonl|csv|parquet or hub id>"
        )
    path = Path(source).expanduser()
    if is_local_source(source):
        if not path.exists():
            raise FileNotFoundError(f"{task.name}: data file {path} does not exist")
        rows = _read_local(path)
        origin = str(path)
    else:
        rows = _read_hub(source, getattr(task, "hf_config", None), split)
        origin = f"{source}[{split}]"
    # rows the reader could not decode arrive as {"__error__": why}; validate_rows skips them by name
    return list(itertools.islice(task.validate_rows(rows, origin), limit))
