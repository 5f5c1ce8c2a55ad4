"""Rewards for GRPO: task rewards (d1), temporal consistency rewards (TCR) and their weighted sum.

ALGORITHMS.md section 7. A reward function maps a batch of completions and their task examples (plain
dicts) to one float per completion. Rollouts with no parsable answer get the task's lowest reward (the
task's ``reward`` already does this: ``None`` answers are wrong and unformatted).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from dllm_lab.tasks.base import Example, Task

RewardFn = Callable[[list[str], list[Example]], list[float]]

TCR_RULES = ("tse", "fixed", "brier", "logarithmic", "spherical", "proper_spherical")
LOG_SCORE_EPS = 1e-6  # c is clipped to [eps, 1 - eps] before the logarithmic score takes log c, log(1-c)


_REGISTRY: dict[str, RewardFn] = {}


def register_reward(name: str, fn: RewardFn) -> None:
    """Make ``fn`` selectable by name in ``algo.rewards`` (e.g. a format or length reward of your own).

    Register at import time of a module your run imports, so DDP worker processes register it too.
    """
    if name in ("task", "correct", "tcr"):
        raise ValueError(f"reward name {name!r} is built in; pick another name")
    _REGISTRY[name] = fn


def registered_rewards() -> dict[str, RewardFn]:
    """The rewards added with :func:`register_reward`, by name."""
    return dict(_REGISTRY)


def _check_batch(completions: list[str], examples: list[Example]) -> None:
    if len(completions) != len(examples):
        raise ValueError(
            f"{len(completions)} completions but {len(examples)} examples; repeat each example once per "
            "generation (num_generations) so that they line up"
        )


def task_reward(task: Task) -> RewardFn:
    """d1's task reward, ``task.reward(completion, example)`` per completion (Zhao et al. 2025)."""

    def reward(completions: list[str], examples: list[Example]) -> list[float]:
        _check_batch(completions, examples)
        return [float(task.reward(c, e)) for c, e in zip(completions, examples, strict=True)]

    return reward


def correctness_reward(task: Task) -> RewardFn:
    """1.0 for a correct answer, 0.0 otherwise (no answer included), via ``task.is_correct``."""

    def reward(completions: list[str], examples: list[Example]) -> list[float]:
        _check_batch(completions, examples)
        return [1.0 if task.is_correct(c, e) else 0.0 for c, e in zip(completions, examples, strict=True)]

    return reward


def tcr_reward(
    tse: torch.Tensor | float,
    correct: torch.Tensor | float,
    rule: str,
    max_entropy: torch.Tensor | float,
) -> torch.Tensor | float:
    """Temporal consistency reward (TCR) of "Time Is a Feature" (Wang et al. 2025, arXiv 2508.09138).

    ``tse`` (N,) temporal semantic entropy in nats; ``correct`` (N,) correctness ``y`` in {0, 1};
    ``max_entropy`` (N,) or a float, ``log(kept steps)``. All floats in give a float out; any tensor in
    gives a tensor (N,) (``tse``'s float dtype, else float32). Confidence ``c = 1 - tse / max_entropy``
    clipped to [0, 1], ``c = 1`` when ``max_entropy`` is 0 (a single kept step). Rules:

    - ``tse``: ``-tse`` (no correctness)
    - ``fixed``: ``y * c``
    - ``brier``: ``y - (c - y)^2``
    - ``logarithmic``: ``y + y log c + (1 - y) log(1 - c)``, ``c`` clipped to [1e-6, 1 - 1e-6]
    - ``spherical`` (paper default): ``y + c / sqrt(c^2 + (1 - c)^2)``
    - ``proper_spherical`` [ours]: ``y + c_y / sqrt(c^2 + (1 - c)^2)``, ``c_y = c`` if ``y`` else ``1 - c``
      (the paper's spherical term rewards confidence even when wrong; this one is a proper score).

    The released reward code overwrote the combined reward with plain correctness, so its TCR runs
    trained on correctness alone; here the combined reward is what is returned.
    """
    if rule not in TCR_RULES:
        raise ValueError(f"unknown TCR rule {rule!r}; choose one of {TCR_RULES}")
    h = torch.as_tensor(tse, dtype=torch.float64)
    y = torch.as_tensor(correct, dtype=torch.float64, device=h.device)
    h_max = torch.as_tensor(max_entropy, dtype=torch.float64, device=h.device)
    c = torch.where(h_max > 0, 1 - h / h_max.clamp_min(1e-300), torch.ones_like(h)).clamp(0.0, 1.0)
    if rule == "tse":
        r = -h
    elif rule == "fixed":
        r = y * c
    elif rule == "brier":
        r = y - (c - y) ** 2
    elif rule == "logarithmic":
        cc = c.clamp(LOG_SCORE_EPS, 1 - LOG_SCORE_EPS)
        r = y + y * torch.log(cc) + (1 - y) * torch.log(1 - cc)
    else:
        norm = torch.sqrt(c**2 + (1 - c) ** 2)  # >= 1/sqrt(2), never 0
        c_y = c if rule == "spherical" else torch.where(y > 0, c, 1 - c)
        r = y + c_y / norm
    if not any(isinstance(x, torch.Tensor) for x in (tse, correct, max_entropy)):
        return float(r)
    return r.to(tse.dtype if isinstance(tse, torch.Tensor) and tse.is_floating_point() else torch.float32)


def weighted_sum(rewards: dict[str, Sequence[float] | torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """``sum_k weights[k] * rewards[k]``, float32 (N,). Every reward needs a weight and vice versa."""
    missing, extra = sorted(set(rewards) - set(weights)), sorted(set(weights) - set(rewards))
    if missing or extra:
        raise ValueError(
            f"reward weights do not match the rewards: no weight for {missing}, weight without reward {extra}; "
            "give exactly one weight per reward function"
        )
    if not rewards:
        raise ValueError("no rewards to combine; configure at least one reward function")
    columns = {k: torch.as_tensor(v, dtype=torch.float32).reshape(-1) for k, v in rewards.items()}
    lengths = {k: int(v.numel()) for k, v in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"rewards differ in length {lengths}; every reward needs one value per completion")
    total = None
    for k, v in columns.items():
        term = float(weights[k]) * v
        total = term if total is None else total + term
    return total
