"""The GRPO rollout as a plain function: decode, then rewards, then advantages (docs/methods.md, "GRPO family")."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import torch

from dllm_lab.decoding import DecodeCallback, DecodeConfig, TrajectoryRecorder, decode
from dllm_lab.decoding.infill import trace_answer_likelihood
from dllm_lab.errors import ConfigError
from dllm_lab.rl.advantages import group_advantages
from dllm_lab.rl.batch import Rollout
from dllm_lab.rl.logprobs import commit_steps, completion_mask
from dllm_lab.rl.rewards import RewardBatch, weighted_sum
from dllm_lab.temporal.callback import TemporalCallback
from dllm_lab.temporal.settings import TemporalSettings

if TYPE_CHECKING:
    from dllm_lab.models.adapter import DiffusionLM
    from dllm_lab.rl.settings import GRPOSettings
    from dllm_lab.tasks.base import Task


def rollout(
    lm: DiffusionLM,
    batch: dict[str, Any],
    decoder: DecodeConfig,
    settings: GRPOSettings,
    tasks: Mapping[str, Task],
    seed: int,
    temporal: TemporalSettings | None = None,
    callbacks: Sequence[DecodeCallback] = (),
) -> Rollout:
    """One rollout batch: ``G = settings.num_generations`` completions per prompt of ``batch`` (a
    :class:`~dllm_lab.data.PromptCollator` batch), their rewards and group advantages.

    ``decoder`` decodes at ``settings.temperature`` with noise seeded by ``seed``. The trajectory is
    recorded when the estimator replays it, and the temporal callback (``temporal`` settings) rides
    along when a reward reads TSE; its per-sample TSE and confidence are what those rewards get.
    ``tasks`` maps task names to :class:`~dllm_lab.tasks.Task` objects. Runs the model in eval mode and
    leaves it so; the completions are plain tensors (not inference tensors), ready for autograd.
    """
    start = time.perf_counter()
    G = settings.num_generations
    estimator = settings.make_estimator()
    rewards = settings.reward_functions()
    prompt_ids = batch["prompt_ids"].repeat_interleave(G, 0)
    attention_mask = batch["attention_mask"].repeat_interleave(G, 0)
    examples = [e for e in batch["examples"] for _ in range(G)]
    names = [t for t in batch["tasks"] for _ in range(G)]
    row_tasks = [tasks[n] for n in names]

    callbacks = list(callbacks)
    if estimator.needs_trajectory:
        callbacks.append(TrajectoryRecorder())
    needs_temporal = any(r.needs_temporal for r in rewards.values())
    if needs_temporal:
        if len(set(names)) > 1:
            raise ConfigError(f"a TSE reward needs one task per run; data.tasks={sorted(set(names))}")
        votes_off = (temporal or TemporalSettings()).without_votes()  # a reward needs TSE, not TCV
        callbacks.append(TemporalCallback(lm, row_tasks[0], examples, votes_off))
    config = dataclasses.replace(decoder, temperature=settings.temperature, seed=seed)
    lm.eval()
    out = decode(lm, prompt_ids, config, callbacks, attention_mask)

    correct = torch.tensor([t.is_correct(c, e) for t, c, e in zip(row_tasks, out.texts, examples, strict=True)],
                           dtype=torch.float32)
    samples = out.extras.get("temporal") if needs_temporal else None
    answer_ll = None
    if any(r.needs_answer_likelihood for r in rewards.values()):
        gold = [t.gold_answer_text(e) for t, e in zip(row_tasks, examples, strict=True)]
        if not config.infill or any(g is None for g in gold):
            raise ConfigError("the answer_likelihood reward scores the gold answer in the infilling template's "
                              "answer block: use an infilling decoder (decoder.infill=true) and a task with gold "
                              "answers")
        answer_ll = trace_answer_likelihood(lm, config, out.sequences, prompt_ids, attention_mask, gold)
    reward_batch = RewardBatch(out.texts, examples, row_tasks, correct, samples, settings.tcr_rule, answer_ll)
    values = {name: reward(reward_batch) for name, reward in rewards.items()}
    total = weighted_sum(values, settings.rewards)
    advantages = group_advantages(total, G, scale=settings.advantage_scale)

    completion = out.sequences.clone()  # decode runs in inference mode: an autograd-usable copy
    device = next(lm.parameters()).device
    commit_step, num_steps = None, 0
    if estimator.needs_trajectory:
        committed = out.extras["trajectory"]["committed"]
        if committed.shape[0] == 0:
            raise ConfigError(f"algo.estimator={estimator.name}: the decoder recorded no step to replay")
        commit_step, num_steps = commit_steps(committed).to(device), int(committed.shape[0])
    return Rollout(
        prompt_ids=prompt_ids, attention_mask=attention_mask, completion=completion,
        completion_mask=completion_mask(completion, lm.end_token_ids), commit_step=commit_step, num_steps=num_steps,
        rewards=values, total=total.to(device), advantages=advantages.to(device), correct=correct,
        tse=None if samples is None else torch.tensor([s.tse for s in samples], dtype=torch.float32),
        texts=out.texts, examples=examples, tasks=names, seed=seed, nfe=out.nfe, seconds=time.perf_counter() - start,
    )
