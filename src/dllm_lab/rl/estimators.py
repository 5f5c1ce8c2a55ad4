"""Log-probability estimators of the GRPO family: one interface, selected by name (``algo.estimator``).

docs/methods.md, "GRPO family". An estimator turns a :class:`~dllm_lab.rl.batch.Rollout` into per-token
log-probabilities under a policy and the mask of the tokens they count for:

- ``one_step`` (diffu-GRPO, d1): prompt tokens masked with ``p_mask_prompt``, completion fully masked, one
  forward pass; a fresh prompt mask per inner iteration, shared by the old, reference and current policy;
- ``full_mask`` (the one-step baseline of Taming MDLMs): clean prompt, completion fully masked;
- ``trajectory`` (CJ-GRPO): one pass per recorded decoding step, scoring the tokens committed at that step.

A new estimator subclasses :class:`Estimator` with a ``name``; it is registered when the class is defined.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import torch

from dllm_lab.rl.batch import Rollout
from dllm_lab.rl.logprobs import full_mask_logps, one_step_logps, trajectory_logps

if TYPE_CHECKING:
    from dllm_lab.models.adapter import DiffusionLM

ESTIMATORS: dict[str, type[Estimator]] = {}


class Estimator:
    """Per-token log-probs of a rollout's completions.

    ``needs_trajectory``: the rollout must record the decoding trajectory. ``varies_per_iteration``: the
    input differs per inner iteration (old and reference log-probs are then computed once per iteration).
    """

    name: ClassVar[str]
    needs_trajectory: ClassVar[bool] = False
    varies_per_iteration: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs) -> None:
        super().__init_subclass__(**kwargs)
        ESTIMATORS[cls.name] = cls

    def logps(self, lm: DiffusionLM, ro: Rollout, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``(logp, mask)``: (N, L) for one-step estimators, (S, N, L) for ``trajectory``."""
        raise NotImplementedError


class OneStep(Estimator):
    """diffu-GRPO (d1, Zhao et al. 2025, Sec. 3.2): random prompt masking, completion fully masked."""

    name = "one_step"
    varies_per_iteration = True

    def __init__(self, p_mask_prompt: float = 0.15) -> None:
        self.p_mask_prompt = p_mask_prompt

    @staticmethod
    def iteration_seed(rollout_seed: int, iteration: int) -> int:
        """One prompt-mask seed per inner iteration, shared by the old, reference and current policy."""
        return rollout_seed * 97 + iteration

    def logps(self, lm: DiffusionLM, ro: Rollout, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        seed = self.iteration_seed(ro.seed, iteration)
        logp = one_step_logps(lm, ro.prompt_ids, ro.attention_mask, ro.completion, seed, self.p_mask_prompt)
        return logp, ro.completion_mask


class FullMask(Estimator):
    """The one-step baseline of Taming MDLMs: clean prompt, completion fully masked."""

    name = "full_mask"

    def logps(self, lm: DiffusionLM, ro: Rollout, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        return full_mask_logps(lm, ro.prompt_ids, ro.attention_mask, ro.completion), ro.completion_mask


class Trajectory(Estimator):
    """CJ-GRPO (Taming MDLMs, Yang et al. 2025, Sec. 4): every recorded transition ``x_{s-1} -> x_s``."""

    name = "trajectory"
    needs_trajectory = True

    def logps(self, lm: DiffusionLM, ro: Rollout, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        if ro.commit_step is None:
            raise ValueError("the trajectory estimator needs a rollout recorded with its trajectory")
        return trajectory_logps(lm, ro.prompt_ids, ro.attention_mask, ro.completion, ro.commit_step, ro.num_steps)


def get_estimator(name: str, p_mask_prompt: float = 0.15) -> Estimator:
    """The estimator registered as ``name`` (``p_mask_prompt`` is used by ``one_step`` only)."""
    try:
        cls = ESTIMATORS[name]
    except KeyError:
        raise ValueError(f"unknown estimator {name!r}; choose one of {sorted(ESTIMATORS)}") from None
    return cls(p_mask_prompt) if issubclass(cls, OneStep) else cls()
