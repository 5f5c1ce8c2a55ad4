"""Pure pieces of GRPO for masked diffusion LMs: rewards, advantages, log-prob estimators, the loss.

ALGORITHMS.md sections 7-8 (d1 / diffu-GRPO, CJ-GRPO, TCR). One RL step, in order::

    rewards = weighted_sum({"task": task_reward(task)(texts, examples)}, {"task": 1.0})   # (N,)
    adv = group_advantages(rewards, group_size=G)                                         # (N,)
    logp = one_step_logps(lm, prompt_ids, prompt_mask, completion_ids, seed)              # (N, L)
    loss, stats = policy_loss(logp, old_logp, ref_logp, adv, completion_mask(completion_ids, lm.eos_token_ids))
"""

from dllm_lab.rl.advantages import ADVANTAGE_SCALES, group_advantages
from dllm_lab.rl.logprobs import (
    commit_steps,
    completion_mask,
    full_mask_logps,
    one_step_logps,
    trajectory_logps,
)
from dllm_lab.rl.loss import policy_loss
from dllm_lab.rl.rewards import (
    LOG_SCORE_EPS,
    TCR_RULES,
    RewardFn,
    correctness_reward,
    register_reward,
    registered_rewards,
    task_reward,
    tcr_reward,
    weighted_sum,
)

__all__ = [
    "ADVANTAGE_SCALES", "LOG_SCORE_EPS", "TCR_RULES", "RewardFn", "commit_steps", "completion_mask",
    "correctness_reward", "full_mask_logps", "group_advantages", "one_step_logps", "policy_loss", "register_reward",
    "registered_rewards", "task_reward",
    "tcr_reward", "trajectory_logps", "weighted_sum",
]
