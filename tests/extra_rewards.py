"""A user reward module for the RL tests (not a test module), named by ``imports=[extra_rewards]`` as a user's
own module would be: a spawned DDP worker must import it again to find the reward."""

from dllm_lab.rl import register_reward


# (almost) always differs within a group, so advantages and gradients are non-zero even for an untrained policy
@register_reward("text_length")
def text_length(batch):
    return [len(c) % 7 / 6 for c in batch.completions]
