"""RL for masked diffusion LMs: the rollout function, the reward registry, advantages, log-prob estimators,
the policy loss and the typed ``algo`` settings (docs/methods.md, "Rewards" and "GRPO family").

One GRPO step, in order (what :class:`~dllm_lab.training.grpo.GRPOModule` runs)::

    ro = rollout(lm, batch, decoder, settings, tasks, seed)        # decode -> rewards -> advantages
    estimator = settings.make_estimator()
    logp, mask = estimator.logps(lm, ro, iteration=0)              # (N, L), or (S, N, L) for trajectory
    loss, stats = policy_loss(logp, old_logp, ref_logp, ro.advantages, mask, eps, beta)
"""

from dllm_lab.rl.advantages import ADVANTAGE_SCALES, group_advantages
from dllm_lab.rl.batch import Rollout
from dllm_lab.rl.d1_rewards import D1_MATH_REWARDS, xml_answer, xml_count  # registers d1's format rewards
from dllm_lab.rl.estimators import ESTIMATORS, Estimator, FullMask, OneStep, Trajectory, get_estimator
from dllm_lab.rl.logprobs import commit_steps, completion_mask, full_mask_logps, one_step_logps, trajectory_logps
from dllm_lab.rl.loss import policy_loss
from dllm_lab.rl.rewards import (
    BUILTIN_REWARDS,
    LOG_SCORE_EPS,
    REWARDS,
    TCR_RULES,
    Reward,
    RewardBatch,
    RewardFn,
    correctness_reward,
    get_reward,
    register_reward,
    task_reward,
    tcr_reward,
    temporal_consistency_reward,
    weighted_sum,
)
from dllm_lab.rl.rollout import rollout
from dllm_lab.rl.settings import GRPOSettings

__all__ = [
    "ADVANTAGE_SCALES", "BUILTIN_REWARDS", "D1_MATH_REWARDS", "ESTIMATORS", "LOG_SCORE_EPS", "REWARDS", "TCR_RULES",
    "Estimator", "FullMask", "GRPOSettings", "OneStep", "Reward", "RewardBatch", "RewardFn", "Rollout", "Trajectory",
    "commit_steps", "completion_mask", "correctness_reward", "full_mask_logps", "get_estimator", "get_reward",
    "group_advantages", "one_step_logps", "policy_loss", "register_reward", "rollout", "task_reward", "tcr_reward",
    "temporal_consistency_reward", "trajectory_logps", "weighted_sum", "xml_answer", "xml_count",
]
