"""Posterior SFT's pieces (No Compute Left Behind, arXiv 2510.19990; docs/methods.md "Posterior SFT"):
sample ``K`` reasoning traces per prompt from ``p(r | c, a*)``, score each by its answer log-likelihood, filter,
and turn the kept ones into SFT items in the model's normal answer format.

    traces = sample_posterior_traces(lm, batch, sampler, settings, tasks, seed)   # K per prompt, scored
    kept = filter_traces(traces, settings)                                        # TraceFilter's rule
    items = sft_items(kept, lm, sampler, key)                                     # for SFTCollator
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dllm_lab.decoding import DecodeCallback, DecodeConfig, decode
from dllm_lab.decoding.infill import trace_records
from dllm_lab.errors import ConfigError

if TYPE_CHECKING:
    from dllm_lab.models.adapter import DiffusionLM
    from dllm_lab.tasks.base import Task

FILTERS = ("likelihood", "top_fraction", "none")


@dataclass(frozen=True)
class PosteriorSettings:
    """The ``algo`` block of ``algo=posterior_sft``.

    num_traces: ``K`` traces per prompt, sampled at ``temperature`` (> 0) with the sampler decoder (an
        infilling decoder with ``posterior=true``: the gold answer is pre-filled, only the reasoning is decoded).
    filter: ``likelihood`` keeps traces with ``ll >= log(tau)``; ``top_fraction`` keeps the best
        ``ceil(top_fraction * K)`` of each prompt; ``none`` keeps every valid trace. A trace is invalid, and
        always dropped, when its reasoning block still holds a mask or has no end (it used the whole budget,
        so it may be cut off) [ours].
    resample_every: ``None``: every trace is sampled by the initial model (the paper's single round, a
        frozen copy); ``N``: the sampler takes the trained weights every ``N`` steps (a new round); ``1``:
        always the current model (no copy).
    max_empty_batches: a batch that keeps no trace is skipped (counted); this many in a row stop the run,
        naming the filter (it is too strict for the model). sample_table_every: log a table of traces every
        N steps (0: never).
    """

    num_traces: int = 4
    temperature: float = 0.7
    filter: str = "likelihood"
    tau: float = 0.5
    top_fraction: float = 0.5
    resample_every: int | None = None
    max_empty_batches: int = 10
    sample_table_every: int = 50

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"algo.{key}={getattr(self, key)!r}: {message}")

        need(self.num_traces >= 1, "num_traces", "sample at least one trace per prompt")
        need(self.temperature > 0, "temperature", "posterior traces are sampled: use a temperature > 0")
        need(self.filter in FILTERS, "filter", f"choose one of {FILTERS}")
        need(0.0 < self.tau <= 1.0, "tau", "a probability in (0, 1]: traces keep ll >= log(tau)")
        need(0.0 < self.top_fraction <= 1.0, "top_fraction", "a fraction in (0, 1]")
        need(self.resample_every is None or self.resample_every >= 1, "resample_every", "null or a step count >= 1")
        need(self.max_empty_batches >= 1, "max_empty_batches", "must be >= 1")

    def describe_filter(self) -> str:
        """The filter and its threshold, as the override that sets it."""
        if self.filter == "likelihood":
            return f"algo.filter=likelihood with algo.tau={self.tau} (keep ll >= {math.log(self.tau):.3f})"
        if self.filter == "top_fraction":
            return f"algo.filter=top_fraction with algo.top_fraction={self.top_fraction}"
        return "algo.filter=none (only invalid traces are dropped)"


def sample_posterior_traces(
    lm: DiffusionLM, batch: dict[str, Any], sampler: DecodeConfig, settings: PosteriorSettings,
    tasks: Mapping[str, Task], seed: int, callbacks: Sequence[DecodeCallback] = (),
) -> list[dict[str, Any]]:
    """``K`` traces per prompt of a :class:`~dllm_lab.data.PromptCollator` batch, each a record of
    :func:`~dllm_lab.decoding.infill.trace_records` plus ``task``, ``prompt``, ``prompt_index`` (its row in
    ``batch``) and ``seconds``. Runs ``lm`` in eval mode and leaves it so."""
    start = time.perf_counter()
    K = settings.num_traces
    gold = []
    for name, example in zip(batch["tasks"], batch["examples"], strict=True):
        answer = tasks[name].gold_answer_text(example)
        if answer is None:
            raise ConfigError(f"posterior SFT conditions on each prompt's gold answer, and a {name!r} example has "
                              f"none ({str(example)[:80]}); train on a task and source with gold answers")
        gold += [answer] * K
    prompt_ids = batch["prompt_ids"].repeat_interleave(K, 0)
    attention_mask = batch["attention_mask"].repeat_interleave(K, 0)
    config = dataclasses.replace(sampler, temperature=settings.temperature, seed=seed)
    lm.eval()
    out = decode(lm, prompt_ids, config, callbacks, attention_mask, gold)
    records = trace_records(lm, config, out, attention_mask, gold)
    seconds = time.perf_counter() - start
    for i, record in enumerate(records):
        b = i // K
        record.update(task=batch["tasks"][b], prompt=batch["prompts"][b], prompt_index=b, seconds=seconds)
    return records


def filter_traces(traces: Sequence[dict[str, Any]], settings: PosteriorSettings) -> list[dict[str, Any]]:
    """The traces ``settings.filter`` keeps (invalid ones never: see :class:`PosteriorSettings`)."""
    valid = [t for t in traces if t["ended"] and not t["has_mask"] and math.isfinite(t["answer_ll"])]
    if settings.filter == "none":
        return valid
    if settings.filter == "likelihood":
        floor = math.log(settings.tau)
        return [t for t in valid if t["answer_ll"] >= floor]
    keep = math.ceil(settings.top_fraction * settings.num_traces)
    by_prompt: dict[int, list[dict[str, Any]]] = {}
    for t in valid:
        by_prompt.setdefault(t["prompt_index"], []).append(t)
    return [t for group in by_prompt.values() for t in sorted(group, key=lambda t: -t["answer_ll"])[:keep]]


def trace_completion(trace: dict[str, Any], sampler: DecodeConfig) -> str:
    """A kept trace in the model's normal answer format: ``reasoning + delimiter + answer + closing``, the
    text the infilling template held (so a model trained on it answers the same way without the template)."""
    return f"{trace['reasoning']}{sampler.infill_delimiter}{trace['answer']}{sampler.infill_closing}"


def sft_items(
    kept: Sequence[dict[str, Any]], prompt_ids: Sequence[Sequence[int]], lm: DiffusionLM, sampler: DecodeConfig,
    key: str,
) -> list[dict[str, Any]]:
    """:class:`~dllm_lab.data.SFTCollator` items of the kept traces; ``prompt_ids[b]`` is prompt ``b``'s ids
    (unpadded) and ``key`` seeds the noise (distinct per step and rank)."""
    return [{"key": f"{key}-{i}", "prompt_ids": list(prompt_ids[t["prompt_index"]]),
             "response_ids": lm.chat.response_ids(trace_completion(t, sampler))} for i, t in enumerate(kept)]
