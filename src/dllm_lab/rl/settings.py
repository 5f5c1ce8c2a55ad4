"""``GRPOSettings``: the ``algo`` block of a GRPO-family run, typed and validated before anything is built."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from dllm_lab.errors import ConfigError
from dllm_lab.rl.advantages import ADVANTAGE_SCALES
from dllm_lab.rl.estimators import ESTIMATORS, Estimator, get_estimator
from dllm_lab.rl.rewards import REWARDS, TCR_RULES, Reward, get_reward


@dataclass(frozen=True)
class GRPOSettings:
    """diffu-GRPO, the one-step baseline and CJ-GRPO (docs/methods.md, "GRPO family"); defaults are d1's.

    estimator: ``one_step`` | ``full_mask`` | ``trajectory`` (or a registered :class:`Estimator`).
    rewards: reward name -> weight (names from :data:`~dllm_lab.rl.rewards.REWARDS`); tcr_rule: the
        rule of the ``tcr`` reward.
    num_generations: ``G`` completions per prompt; num_iterations: ``mu`` updates per rollout.
    temperature: rollout sampling temperature (> 0). eps / beta: clip range and k3-KL weight (0 skips the
        reference policy); p_mask_prompt: prompt masking of ``one_step``.
    advantage_scale: ``none`` (d1) | ``group`` | ``batch`` std scaling. max_grad_norm: clipping per update
        (``None``: off). sample_table_every: log a table of completions every N rollouts (0: never).
    lora: peft LoRA settings (``r``, ``alpha``, ``dropout``, ``target_modules``), or ``None`` for full
        fine-tuning with a frozen copy as the reference policy.
    drop_uniform_groups: update only on the groups with a non-zero advantage (DAPO's dynamic sampling, without
        its resampling: a rollout whose groups all tie updates on the KL term alone, so step counts hold).
    """

    estimator: str = "one_step"
    rewards: dict[str, float] = field(default_factory=lambda: {"task": 1.0})
    tcr_rule: str = "spherical"
    num_generations: int = 6
    num_iterations: int = 1
    temperature: float = 0.9
    eps: float = 0.5
    beta: float = 0.04
    p_mask_prompt: float = 0.15
    advantage_scale: str = "none"
    max_grad_norm: float | None = 1.0
    sample_table_every: int = 0
    lora: dict[str, Any] | None = None
    drop_uniform_groups: bool = False

    def __post_init__(self) -> None:
        def need(ok: bool, key: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"algo.{key}={getattr(self, key)!r}: {message}")

        need(self.estimator in ESTIMATORS, "estimator", f"choose one of {sorted(ESTIMATORS)}")
        unknown = sorted(set(self.rewards) - set(REWARDS))
        need(bool(self.rewards) and not unknown, "rewards",
             f"unknown {unknown}; choose from {sorted(REWARDS)} (add your own with dllm_lab.rl.register_reward in a "
             "module named in imports=[...])")
        need(all(math.isfinite(float(w)) for w in self.rewards.values()), "rewards", "weights must be finite")
        need(self.tcr_rule in TCR_RULES, "tcr_rule", f"choose one of {TCR_RULES}")
        need(self.num_generations >= 2, "num_generations", "GRPO needs >= 2 completions per prompt")
        need(self.num_iterations >= 1, "num_iterations", "must be >= 1")
        need(self.temperature > 0, "temperature", "rollouts must sample (temperature > 0), or every completion "
             "of a group is the same")
        need(self.eps > 0, "eps", "the clip range must be > 0 (d1 uses 0.5)")
        need(self.beta >= 0, "beta", "the KL weight must be >= 0 (0 skips the reference policy)")
        need(0.0 <= self.p_mask_prompt <= 1.0, "p_mask_prompt", "must be a probability in [0, 1]")
        need(self.advantage_scale in ADVANTAGE_SCALES, "advantage_scale", f"choose one of {ADVANTAGE_SCALES}")
        need(self.max_grad_norm is None or self.max_grad_norm > 0, "max_grad_norm", "must be > 0, or null for off")
        need(self.sample_table_every >= 0, "sample_table_every", "must be >= 0 (0: never)")

    def make_estimator(self) -> Estimator:
        return get_estimator(self.estimator, self.p_mask_prompt)

    def reward_functions(self) -> dict[str, Reward]:
        return {name: get_reward(name) for name in self.rewards}

    @property
    def needs_answer_likelihood(self) -> bool:
        """Whether a reward reads the gold answer's likelihood under each completion (infilling decoders)."""
        return any(get_reward(name).needs_answer_likelihood for name in self.rewards)

    @property
    def needs_temporal(self) -> bool:
        """Whether a reward reads the rollout's TSE (the temporal callback must ride along)."""
        return any(get_reward(name).needs_temporal for name in self.rewards)
