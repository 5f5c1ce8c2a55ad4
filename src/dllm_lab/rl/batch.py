"""``Rollout``: one rollout batch, what the rollout function returns and the estimators and loss read."""

from __future__ import annotations

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
