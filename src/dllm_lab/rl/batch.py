"""``Rollout``: one rollout batch, what the rollout function returns and the estimators and loss read."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Rollout:
    """One rollout batch of ``N = prompts * G`` completions.

    prompt_ids / attention_mask: (N, P) left-padded prompts, each repeated ``G`` times.
    completion: (N, L) generated ids; completion_mask: (N, L) tokens up to and including the first end token.
    commit_step: (N, L) the step that committed each position (``trajectory`` estimator only, else ``None``);
        num_steps: recorded steps of the decode (0 without a trajectory).
    rewards: (N,) per reward name; total: (N,) their weighted sum; advantages: (N,) group advantages.
    correct: (N,) 0/1 correctness; tse: (N,) TSE when a reward needed it; texts / examples / tasks: per row.
    seed: the rollout's seed (sampling noise, one_step prompt masks); nfe: forward passes of the decode;
    seconds: wall time of decode + rewards.
    """

    prompt_ids: torch.Tensor
    attention_mask: torch.Tensor
    completion: torch.Tensor
    completion_mask: torch.Tensor
    commit_step: torch.Tensor | None
    num_steps: int
    rewards: dict[str, torch.Tensor]
    total: torch.Tensor
    advantages: torch.Tensor
    correct: torch.Tensor
    tse: torch.Tensor | None
    texts: list[str]
    examples: list[dict[str, Any]]
    tasks: list[str]
    seed: int
    nfe: int
    seconds: float

    def informative_rows(self, group_size: int) -> torch.Tensor:
        """Indices of the rows whose group has any non-zero advantage (DAPO's dynamic sampling keeps only
        those: a group whose completions all scored the same teaches the policy term nothing)."""
        groups = self.advantages.reshape(-1, group_size).ne(0).any(1)
        return groups.repeat_interleave(group_size).nonzero().squeeze(1)

    def select(self, rows: torch.Tensor) -> Rollout:
        """The rollout restricted to ``rows`` (whole groups, in order); the update's inputs only."""
        index = rows.tolist()

        def take(x):
            return None if x is None else x[rows.to(x.device)]

        return dataclasses.replace(
            self, prompt_ids=take(self.prompt_ids), attention_mask=take(self.attention_mask),
            completion=take(self.completion), completion_mask=take(self.completion_mask),
            commit_step=take(self.commit_step), rewards={k: take(v) for k, v in self.rewards.items()},
            total=take(self.total), advantages=take(self.advantages), correct=take(self.correct), tse=take(self.tse),
            texts=[self.texts[i] for i in index], examples=[self.examples[i] for i in index],
            tasks=[self.tasks[i] for i in index],
        )
