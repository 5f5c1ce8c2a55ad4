"""Rewards for GRPO in one registry: the built-ins (``task``, ``correct``, ``tcr``) and your own.

docs/methods.md, "Rewards". A reward sees a :class:`RewardBatch` (one entry per completion, ``N`` of them)
and returns one float per completion. Completions with no parsable answer get the task's lowest reward
(the task's ``reward`` already does this: ``None`` answers are wrong and unformatted).

Add your own in a module the run imports (``imports=[my_pkg.rewards]`` on the command line), then name it
in ``algo.rewards``::

    from dllm_lab.rl import register_reward

    @register_reward("short")
    def short(batch):               # batch.completions, batch.examples, batch.tasks, batch.correct, ...
        return [-len(c) / 100 for c in batch.completions]
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from dllm_lab.tasks.base import Example, Task
    from dllm_lab.temporal.callback import TemporalSample

TCR_RULES = ("tse", "fixed", "brier", "logarithmic", "spherical", "proper_spherical")
LOG_SCORE_EPS = 1e-6  # c is clipped to [eps, 1 - eps] before the logarithmic score takes log c, log(1-c)


@dataclass(frozen=True)
class RewardBatch:
    """What a reward function sees, one entry per completion (``N``).

    completions: decoded texts; examples: their task examples (plain dicts); tasks: their
    :class:`~dllm_lab.tasks.Task` objects; correct: (N,) float 0/1 from ``task.is_correct``, computed once
    per rollout; temporal: the rollout's :class:`~dllm_lab.temporal.TemporalSample` per completion (its
    TSE and confidence), present when a registered reward has ``needs_temporal``; tcr_rule: the rule of
    the ``tcr`` reward (``algo.tcr_rule``); answer_ll: (N,) ``mean_i log p(a*_i | c, r)`` of each
    completion's reasoning, present when a reward has ``needs_answer_likelihood`` (infilling decoders only).
    """

    completions: list[str]
    examples: list[Example]
    tasks: list[Task]
    correct: torch.Tensor
    temporal: list[TemporalSample] | None = None
    tcr_rule: str = "spherical"
    answer_ll: torch.Tensor | None = None

    def __post_init__(self) -> None:
        n = len(self.completions)
        if not (len(self.examples) == len(self.tasks) == int(self.correct.numel()) == n):
            raise ValueError(
                f"{n} completions but {len(self.examples)} examples, {len(self.tasks)} tasks and "
                f"{int(self.correct.numel())} correctness flags; repeat each example once per generation "
                "(num_generations) so that they line up"
            )


RewardFn = Callable[[RewardBatch], "Sequence[float] | torch.Tensor"]


@dataclass(frozen=True)
class Reward:
    """A registered reward: ``fn(batch)`` -> (N,) values; ``needs_temporal``: the rollout must run the
    temporal callback so that ``batch.temporal`` is filled; ``needs_answer_likelihood``: the rollout scores
    the gold answer under each completion's reasoning (``batch.answer_ll``)."""

    name: str
    fn: RewardFn
    needs_temporal: bool = False
    needs_answer_likelihood: bool = False

    def __call__(self, batch: RewardBatch) -> torch.Tensor:
        values = torch.as_tensor(self.fn(batch), dtype=torch.float32).reshape(-1)
        if values.numel() != len(batch.completions):
            raise ValueError(
                f"reward {self.name!r} returned {values.numel()} values for {len(batch.completions)} completions; "
                "return one float per completion"
            )
        return values


REWARDS: dict[str, Reward] = {}
BUILTIN_REWARDS = ("task", "correct", "tcr", "answer_likelihood", "d1_integer", "d1_strict_format", "d1_soft_format",
                   "d1_xml_count")


def register_reward(
    name: str, fn: RewardFn | None = None, *, needs_temporal: bool = False, needs_answer_likelihood: bool = False
) -> Any:
    """Make ``fn(batch: RewardBatch) -> N floats`` selectable as ``algo.rewards=[..., name]``.

    Use it directly (``register_reward("len", fn)``) or as a decorator (``@register_reward("len")``).
    Register at import time of a module the run imports (``imports=[my_pkg.rewards]``), so DDP worker
    processes register it too. Built-in names cannot be replaced; registering a user name again replaces it.
    """

    def add(f: RewardFn) -> RewardFn:
        if name in BUILTIN_REWARDS and name in REWARDS:
            raise ValueError(f"reward name {name!r} is built in; pick another name")
        REWARDS[name] = Reward(name, f, needs_temporal, needs_answer_likelihood)
        return f

    return add if fn is None else add(fn)


def get_reward(name: str) -> Reward:
    """The reward registered as ``name``; a clear error lists the available ones."""
    try:
        return REWARDS[name]
    except KeyError:
        raise ValueError(
            f"unknown reward {name!r}; available: {sorted(REWARDS)} (add your own with "
            "dllm_lab.rl.register_reward in a module named in imports=[...])"
        ) from None


@register_reward("task")
def task_reward(batch: RewardBatch) -> list[float]:
    """d1's task reward (Zhao et al. 2025): ``task.reward(completion, example)`` per completion."""
    return [float(t.reward(c, e)) for t, c, e in zip(batch.tasks, batch.completions, batch.examples, strict=True)]


@register_reward("correct")
def correctness_reward(batch: RewardBatch) -> torch.Tensor:
    """1.0 for a correct answer, 0.0 otherwise (no answer included): the rollout's ``correct``."""
    return batch.correct


@register_reward("tcr", needs_temporal=True)
def temporal_consistency_reward(batch: RewardBatch) -> torch.Tensor:
    """TCR with ``batch.tcr_rule`` on the TSE and confidence the rollout's temporal callback computed."""
    if batch.temporal is None:
        raise ValueError("the tcr reward needs the rollout's temporal samples (RewardBatch.temporal)")
    tse = torch.tensor([s.tse for s in batch.temporal], dtype=torch.float32)
    confidence = torch.tensor([s.confidence for s in batch.temporal], dtype=torch.float32)
    return tcr_reward(tse, confidence, batch.correct, batch.tcr_rule)  # type: ignore[return-value]


@register_reward("answer_likelihood", needs_answer_likelihood=True)
def answer_likelihood_reward(batch: RewardBatch) -> torch.Tensor:
    """No Compute Left Behind's answer-likelihood reward: ``mean_i log p(a*_i | c, r)`` of the gold answer
    under the completion's reasoning ``r`` (<= 0; higher when the reasoning supports the right answer)."""
    if batch.answer_ll is None:
        raise ValueError("the answer_likelihood reward needs the rollout's answer scores (RewardBatch.answer_ll)")
    return batch.answer_ll


def tcr_reward(
    tse: torch.Tensor | float,
    confidence: torch.Tensor | float,
    correct: torch.Tensor | float,
    rule: str,
) -> torch.Tensor | float:
    """Temporal consistency reward (TCR) of "Time Is a Feature" (Wang et al. 2025, arXiv 2508.09138, Sec. 4).

    ``tse`` (N,) temporal semantic entropy in nats; ``confidence`` (N,) its normalised confidence ``c``
    in [0, 1] (:attr:`TemporalSample.confidence <dllm_lab.temporal.TemporalSample>`, computed once by the
    rollout's temporal callback: 0 when no kept step parsed); ``correct`` (N,) correctness ``y`` in {0, 1}.
    All floats in give a float out; any tensor in gives a tensor (N,) (``tse``'s float dtype, else
    float32). Rules:

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
    c = torch.as_tensor(confidence, dtype=torch.float64, device=h.device).clamp(0.0, 1.0)
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
    if not any(isinstance(x, torch.Tensor) for x in (tse, confidence, correct)):
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
