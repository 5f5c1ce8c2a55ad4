"""Where a training stream's examples come from: a task's generator, a local file, or a streamed hub dataset.

:class:`~dllm_lab.data.TaskMixtureStream` draws each global sample's task by weight; the source then
gives that task's ``k``-th example. ``k`` is a pure function of the sample index, so a stream is exact on
resume and the same for any worker count:

- :class:`FileExamples`: ``k`` counts the task's draws over every earlier sample of every rank, and
  indexes a fresh permutation of the file each epoch. Ranks take disjoint samples, so within an epoch no
  example is seen twice, on any rank.
- :class:`HubExamples`: the dataset streams (``datasets`` streaming), sharded by rank with
  ``split_dataset_by_node``; ``k`` counts the task's draws over this rank's earlier samples, and the
  stream skips to it on resume.
"""

from __future__ import annotations

import itertools
import logging
import random
from collections.abc import Iterator
from typing import Any

from dllm_lab.errors import ConfigError
from dllm_lab.tasks import Task

log = logging.getLogger(__name__)

SYNTHETIC = "synthetic"


def has_reasoning(example: dict[str, Any]) -> bool:
    """Whether a row carries a reference reasoning, what SFT trains on."""
    return bool(str(example.get("reasoning") or "").strip())


def sft_rows(task: Task, examples: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """The rows SFT can train on (those with a reasoning, the others counted in a warning); a source with
    none fails, naming the source, the field and the modes it can still serve."""
    kept = [e for e in examples if has_reasoning(e)]
    if not kept:
        raise ConfigError(
            f"data.train_sources.{task.name}={source}: its rows have no reference reasoning (the 'reasoning' "
            "field; GSM8K's '####' solutions and MATH's 'solution' give one), which SFT trains on. Use this source "
            "for RL (algo=diffu_grpo ...) or posterior SFT, which need only the answer, or pick a source with "
            "solutions"
        )
    if len(kept) < len(examples):
        log.warning("%s: %d of %d rows of %s have no reasoning and are left out of SFT", task.name,
                    len(examples) - len(kept), len(examples), source)
    return kept


class FileExamples:
    """The validated rows of a local jsonl/json/csv/parquet file (``examples``, read once by the caller)."""

    kind = "file"

    def __init__(self, task: Task, source: str, examples: list[dict[str, Any]], seed: int, exclude: set[str],
                 sft: bool) -> None:
        if sft:
            examples = sft_rows(task, examples, source)
        kept = [e for e in examples if task.build_prompt(e) not in exclude]
        if not kept:
            raise ConfigError(f"data.train_sources.{task.name}={source}: every row is a held-out evaluation prompt")
        self.task, self.examples, self.seed = task, kept, seed
        self._order: tuple[int, list[int]] | None = None  # (epoch, permutation)

    def __len__(self) -> int:
        return len(self.examples)

    def example(self, k: int) -> dict[str, Any]:
        epoch, i = divmod(k, len(self.examples))
        if self._order is None or self._order[0] != epoch:
            order = list(range(len(self.examples)))
            random.Random(f"{self.seed}-{self.task.name}-epoch{epoch}").shuffle(order)
            self._order = (epoch, order)
        return self.examples[self._order[1][i]]


class HubExamples:
    """A hub dataset read with ``datasets`` streaming, this rank's shard only; rows are validated as they
    arrive (malformed ones skipped and counted)."""

    kind = "hub"

    def __init__(self, task: Task, source: str, split: str, rank: int, world: int, exclude: set[str],
                 sft: bool) -> None:
        self.task, self.source, self.split, self.rank, self.world = task, source, split, rank, world
        self.exclude, self.sft = exclude, sft
        self._iter: Iterator[dict[str, Any]] | None = None
        self._next = 0  # index of the example the iterator yields next
        self._length: int | None = None  # the shard's number of valid examples, once known

    def _stream(self, skip: int) -> Iterator[dict[str, Any]]:
        import datasets
        from datasets.distributed import split_dataset_by_node

        ds = datasets.load_dataset(self.source, getattr(self.task, "hf_config", None), split=self.split,
                                   streaming=True)
        if self.world > 1:
            ds = split_dataset_by_node(ds, rank=self.rank, world_size=self.world)
        rows = ((f"row {i} of rank {self.rank}'s shard", row) for i, row in enumerate(ds, 1))
        valid = (e for e in self.task.validate_rows(rows, f"{self.source}[{self.split}]")
                 if self.task.build_prompt(e) not in self.exclude
                 and (not self.sft or has_reasoning(e)))
        return itertools.islice(valid, skip, None)

    def example(self, k: int) -> dict[str, Any]:
        """The ``k``-th valid example of this rank's shard (the shard repeats once it is exhausted)."""
        if self._length is not None:
            k %= self._length
        if self._iter is None or k < self._next:
            self._iter, self._next = self._stream(k), k
        for example in self._iter:
            self._next += 1
            if self._next > k:
                return example
        if self._next == 0:
            raise ValueError(f"{self.task.name}: no valid rows in rank {self.rank}'s shard of {self.source}")
        self._length, self._iter = self._next, None
        return self.example(k)

