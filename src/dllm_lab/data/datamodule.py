"""LightningDataModules: a streaming task mixture for SFT, and fixed prompt sets for evaluation."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Sequence
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset, get_worker_info

from dllm_lab.data.collate import InfillLayout, PromptCollator, SFTCollator
from dllm_lab.data.sources import SYNTHETIC, FileExamples, HubExamples
from dllm_lab.errors import ConfigError
from dllm_lab.models.chat import ChatFormat
from dllm_lab.tasks import Task, get_task, task_name_of
from dllm_lab.tasks.base import D1_ANSWER_CLOSE, D1_ANSWER_OPEN
from dllm_lab.tasks.sources import is_local_source, load_examples

log = logging.getLogger(__name__)


def _rank_world() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _single_token_id(tokenizer: Any, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) != 1:
        raise ValueError(f"data.block_noise_cut={text!r} is {len(ids)} tokens for this tokenizer; it must be one")
    return ids[0]


class TaskMixtureStream(IterableDataset):
    """An endless, pre-batched stream over a weighted mixture of tasks, each from its generator or a real
    source (:mod:`dllm_lab.data.sources`).

    Items carry the prompt, its reference completion and the example, so the ``collator`` decides what a
    batch is: :class:`SFTCollator` (noised SFT inputs) or :class:`PromptCollator` (prompts for RL rollouts).

    Global sample ``g`` is a pure function of ``(seed, g)``: its task is drawn by weight, then the
    task's generator draws the example. Rank ``r`` of ``W`` takes global batches ``j*W + r`` and worker
    ``w`` of ``K`` takes local batches ``start + w + i*K``, which is the order a DataLoader yields them.
    So ranks never share a sample, the stream is identical for any worker count, and
    ``start_batch`` resumes exactly where a checkpoint left off. Prompts in ``exclude`` (held-out
    evaluation sets) are never trained on. A task in ``sources`` takes its ``k``-th example from there,
    ``k`` counted over earlier samples (every rank's for a file, this rank's for a sharded hub stream).
    With ``context_prompts`` = k > 0, a sample's prompt is, with probability ``context_prob``, preceded by 1 to
    k other problems of its task (drawn from its generator), one per line: a long prompt whose last problem
    is the one answered, which teaches a small model prompts and canvases longer than one problem's.
    """

    def __init__(
        self,
        tasks: Sequence[Task],
        weights: Sequence[float],
        chat: ChatFormat,
        collator: SFTCollator | PromptCollator,
        batch_size: int,
        seed: int = 0,
        exclude: set[str] | None = None,
        sources: dict[str, Any] | None = None,
        infill: InfillLayout | None = None,
        context_prompts: int = 0,
        context_prob: float = 0.0,
    ) -> None:
        if len(tasks) != len(weights) or not tasks:
            raise ValueError("data.tasks and data.weights must be non-empty and of equal length")
        if any(w < 0 for w in weights) or sum(weights) <= 0:
            raise ValueError(f"data.weights={list(weights)} must be non-negative with a positive sum")
        self.sources = dict(sources or {})
        missing = [t.name for t in tasks if not t.has_synthetic and t.name not in self.sources]
        if missing:
            raise ConfigError(
                f"data.tasks: {missing} have no synthetic generator; give a real source, e.g. "
                f"'data.train_sources={{{missing[0]}: path/to/train.jsonl}}' (or a hub id)"
            )
        self.tasks, self.weights = list(tasks), list(weights)
        self.chat, self.collator = chat, collator
        self.batch_size, self.seed = batch_size, seed
        self.exclude = exclude or set()
        self.infill = infill
        no_generator = [t.name for t in tasks if not t.has_synthetic] if context_prompts else []
        if no_generator:
            raise ConfigError(f"data.context_prompts: {no_generator} have no synthetic generator to draw context "
                              "problems from; set data.context_prompts=0")
        self.context_prompts, self.context_prob = context_prompts, context_prob
        self.start_batch = 0
        self._scan: dict[str, tuple[int, list[int]]] = {}  # per count kind: (next sample, draws per task)

    def _task_index(self, g: int) -> int:
        return random.Random(f"sft-{self.seed}-{g}").choices(range(len(self.tasks)), self.weights)[0]

    def _draws_before(self, g: int, task_index: int, rank_only: bool) -> int:
        """How often ``task_index`` was drawn by the samples before ``g`` (of this rank only, if asked)."""
        kind = "rank" if rank_only else "all"
        start, counts = self._scan.get(kind, (0, [0] * len(self.tasks)))
        if g < start:
            start, counts = 0, [0] * len(self.tasks)
        rank, world = _rank_world()
        for h in range(start, g):
            if not rank_only or (h // self.batch_size) % world == rank:
                counts[self._task_index(h)] += 1
        self._scan[kind] = (g, counts)
        return counts[task_index]

    def item(self, g: int) -> dict[str, Any]:
        rng = random.Random(f"sft-{self.seed}-{g}")
        task = rng.choices(self.tasks, self.weights)[0]
        source = self.sources.get(task.name)
        if source is not None:
            k = self._draws_before(g, self.tasks.index(task), rank_only=source.kind == "hub")
            example = source.example(k)
            prompt = task.build_prompt(example)
        else:
            while True:
                example = task.sample(rng)
                prompt = task.build_prompt(example)
                if prompt not in self.exclude:
                    break
        if self.context_prompts and rng.random() < self.context_prob:  # no draw at all without context
            others = [task.build_prompt(task.sample(rng)) for _ in range(rng.randint(1, self.context_prompts))]
            prompt = "\n".join([*others, prompt])
        item = {"key": g, "prompt_ids": self.chat.prompt_ids(prompt, task.chat_template), "example": example,
                "task": task.name, "prompt": prompt}
        if isinstance(self.collator, SFTCollator):
            completion = task.reference_completion(example)
            laid_out = None
            if self.infill is not None and task.chat_template:  # plain-text drills keep their layout
                tokenize = lambda text: self.chat.tokenizer.encode(text, add_special_tokens=False)  # noqa: E731
                laid_out = self.infill.response(completion, tokenize, self.chat.eos_token_ids[0],
                                                random.Random(f"infill-{self.seed}-{g}"))
            if laid_out is None:
                item["response_ids"] = self.chat.response_ids(completion)
            else:
                item["response_ids"], item["response_fixed"] = laid_out
        return item

    def batch(self, global_batch: int) -> dict[str, Any]:
        first = global_batch * self.batch_size
        return self.collator([self.item(g) for g in range(first, first + self.batch_size)])

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rank, world = _rank_world()
        info = get_worker_info()
        wid, nworkers = (info.id, info.num_workers) if info else (0, 1)
        local = self.start_batch + wid
        while True:
            yield self.batch(local * world + rank)
            local += nworkers


class PromptSet(Dataset):
    """A fixed list of evaluation prompts of one task, encoded once."""

    def __init__(self, task: Task, examples: list[dict[str, Any]], chat: ChatFormat, name: str | None = None) -> None:
        self.task, self.examples = task, examples
        self.name = name or task.name  # the eval-set key: ``countdown.d1`` for a labelled second set
        self.prompts = [task.build_prompt(e) for e in examples]
        self.ids = [chat.prompt_ids(p, task.chat_template) for p in self.prompts]

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {
            "example": self.examples[i], "task": self.name, "prompt": self.prompts[i], "prompt_ids": self.ids[i],
        }


class TaskDataModule(L.LightningDataModule):
    """Train on a task mixture; validate SFT loss on held-out batches; test by decoding.

    ``train_sources`` maps training task names to where their examples come from: ``"synthetic"`` (the
    default, the task's generator), a local jsonl/json/csv/parquet file or a hub dataset id (split
    ``train_split``), see :mod:`dllm_lab.data.sources`. SFT needs a reference reasoning in those rows;
    RL needs only the answer; ``train_examples`` holds rows of local sources already read and validated
    (the factory's start-up check reads them). ``eval_tasks`` maps task names to a source: ``"synthetic"``
    (held-out seed ``eval_seed``), a local jsonl/csv/parquet path, or a hub dataset id; ``None`` is the
    synthetic test set of every training task.
    ``task_options`` maps task names to keyword arguments of their constructor
    (``{"equations": {"context_lines": 0}}``). ``context_prompts`` / ``context_prob``: long prompts, up to that
    many other problems before the answered one, with that probability (see :class:`TaskMixtureStream`).
    ``prompt_style``: the model's (see
    :attr:`DiffusionLM.prompt_style <dllm_lab.models.DiffusionLM>`). Evaluation sets are
    sharded across ranks by striding (no padding duplicates), so summed metrics are exact under DDP.
    """

    def __init__(
        self,
        chat: ChatFormat,
        mask_token_id: int,
        tasks: Sequence[str] = ("arith", "countdown", "sudoku4"),
        weights: Sequence[float] | None = None,
        eval_tasks: dict[str, str] | None = None,
        prompt_style: str = "compact",
        batch_size: int = 32,
        eval_batch_size: int = 32,
        num_eval: int = 200,
        num_val_batches: int = 4,
        eval_split: str = "test",
        eval_seed: int = 1234,
        seed: int = 0,
        num_workers: int = 0,
        min_response_length: int = 0,
        long_response_length: int = 0,
        long_response_prob: float = 0.0,
        block_noise_prob: float = 0.0,
        block_noise_length: int = 16,
        block_noise_cut: str | None = None,
        infill_prob: float = 0.0,
        infill_gen_lengths: Sequence[int] = (64, 80, 128),
        infill_answer_length: int = 16,
        infill_delimiter: str = D1_ANSWER_OPEN,
        infill_closing: str = D1_ANSWER_CLOSE,
        train_mode: str = "sft",
        task_options: dict[str, dict[str, Any]] | None = None,
        train_sources: dict[str, str] | None = None,
        train_split: str = "train",
        train_examples: dict[str, list[dict[str, Any]]] | None = None,
        context_prompts: int = 0,
        context_prob: float = 0.0,
    ) -> None:
        super().__init__()
        self.chat, self.mask_token_id = chat, mask_token_id
        self.task_names = list(tasks)
        self.weights = list(weights) if weights is not None else [1.0] * len(self.task_names)
        self.eval_sources = dict(eval_tasks) if eval_tasks is not None else {t: "synthetic" for t in tasks}
        self.prompt_style = prompt_style
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_eval, self.num_val_batches = num_eval, num_val_batches
        self.eval_split, self.eval_seed, self.seed = eval_split, eval_seed, seed
        self.num_workers = num_workers
        self.collator = SFTCollator(
            mask_token_id=mask_token_id,
            pad_token_id=chat.eos_token_ids[0],
            min_response_length=min_response_length,
            long_response_length=long_response_length,
            long_response_prob=long_response_prob,
            block_noise_prob=block_noise_prob,
            block_noise_length=block_noise_length,
            block_cut_token_id=_single_token_id(chat.tokenizer, block_noise_cut) if block_noise_cut else None,
            seed=seed,
        )
        self.infill = InfillLayout.build(chat.tokenizer, infill_prob, list(infill_gen_lengths), infill_answer_length,
                                         infill_delimiter, infill_closing) if infill_prob > 0 else None
        if train_mode not in ("sft", "prompts"):
            raise ValueError(f"data.train_mode={train_mode!r}: choose 'sft' (noised SFT batches) or 'prompts' (RL)")
        self.train_mode = train_mode
        self.task_options = {name: dict(opts) for name, opts in (task_options or {}).items()}
        self.train_sources = {k: str(v) for k, v in (train_sources or {}).items() if v not in (None, SYNTHETIC)}
        self.train_split = train_split
        self._file_rows = dict(train_examples or {})  # validated rows of local train sources, read once
        if context_prompts < 0 or not 0.0 <= context_prob <= 1.0:
            raise ConfigError(f"data.context_prompts={context_prompts} / data.context_prob={context_prob}: give a "
                              "non-negative number of problems and a probability in [0, 1]")
        self.context_prompts, self.context_prob = context_prompts, context_prob
        self._eval_sets: list[PromptSet] | None = None
        self._train: TaskMixtureStream | None = None
        self._resume_batch = 0

    # -- evaluation sets ------------------------------------------------------------------------
    def eval_sets(self) -> list[PromptSet]:
        """One :class:`PromptSet` per evaluation task (all of it; sharding happens in the loaders)."""
        if self._eval_sets is None:
            sets = []
            for name, source in self.eval_sources.items():
                task = get_task(name, prompt_style=self.prompt_style, **self.task_options.get(task_name_of(name), {}))
                if source in (None, "synthetic"):
                    examples = task.synthetic(self.num_eval, seed=self.eval_seed)
                else:
                    examples = task.load(self.eval_split, source, limit=self.num_eval)
                sets.append(PromptSet(task, examples, self.chat, name))
            self._eval_sets = sets
        return self._eval_sets

    @property
    def eval_task_names(self) -> list[str]:
        return list(self.eval_sources)

    # -- loaders --------------------------------------------------------------------------------
    def _stream(self, seed: int, exclude: set[str]) -> TaskMixtureStream:
        tasks = [get_task(n, prompt_style=self.prompt_style, **self.task_options.get(n, {})) for n in self.task_names]
        collator = self.collator if self.train_mode == "sft" else PromptCollator(self.chat.eos_token_ids[0])
        return TaskMixtureStream(tasks, self.weights, self.chat, collator, self.batch_size, seed, exclude,
                                 self.real_sources(tasks, seed, exclude), self.infill, self.context_prompts,
                                 self.context_prob)

    def real_sources(self, tasks: Sequence[Task], seed: int, exclude: set[str]) -> dict[str, Any]:
        """The training tasks' real example sources (a local file is read and validated once per DataModule)."""
        rank, world = _rank_world()
        sft = self.train_mode == "sft"
        out: dict[str, Any] = {}
        for task in tasks:
            source = self.train_sources.get(task.name)
            if source is None:
                continue
            if is_local_source(source):
                if task.name not in self._file_rows:
                    self._file_rows[task.name] = load_examples(task, split=self.train_split, source=source)
                out[task.name] = FileExamples(task, source, self._file_rows[task.name], seed, exclude, sft)
            else:
                out[task.name] = HubExamples(task, source, self.train_split, rank, world, exclude, sft)
        return out

    def train_dataloader(self) -> DataLoader:
        held_out = {p for s in self.eval_sets() if s.task.name in self.task_names for p in s.prompts}
        self._train = self._stream(self.seed, held_out)
        self._train.start_batch = self._resume_batch
        return DataLoader(self._train, batch_size=None, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)

    def val_dataloader(self) -> DataLoader | list[DataLoader]:
        if self.train_mode == "prompts":  # RL validates by decoding the first num_val_batches batches of each set
            return self._eval_loaders(self.num_val_batches * self.eval_batch_size)
        stream = self._stream(self.seed + 10_000, set())
        rank, world = _rank_world()
        batches = [stream.batch(j * world + rank) for j in range(self.num_val_batches)]
        return DataLoader(batches, batch_size=None)

    def test_dataloader(self) -> list[DataLoader]:
        return self._eval_loaders(None)

    def _eval_loaders(self, per_rank: int | None) -> list[DataLoader]:
        """One loader per evaluation set, its problems strided over the DDP ranks; ``per_rank``: at most that
        many problems per rank (the first ``per_rank x world`` of the set), ``None``: all of them."""
        rank, world = _rank_world()
        collate = PromptCollator(self.chat.eos_token_ids[0])
        loaders = []
        for s in self.eval_sets():
            end = len(s) if per_rank is None else min(len(s), per_rank * world)
            loaders.append(DataLoader(torch.utils.data.Subset(s, range(rank, end, world)),
                                      batch_size=self.eval_batch_size, collate_fn=collate))
        return loaders

    predict_dataloader = test_dataloader

    # -- exact resume ---------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        # Checkpoints are written after an optimizer step, so every batch up to it has been consumed.
        trainer = getattr(self, "trainer", None)
        seen = 0
        if trainer is not None:  # RL modules take several optimizer steps per batch
            per_batch = getattr(trainer.lightning_module, "optimizer_steps_per_batch", 1)
            seen = trainer.global_step * trainer.accumulate_grad_batches // per_batch
        return {"batches_seen": int(seen)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._resume_batch = int(state.get("batches_seen", 0))
