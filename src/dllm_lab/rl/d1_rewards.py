"""d1's format rewards for GSM8K / SVAMP / MATH (Zhao et al. 2025, arXiv 2504.12216), as named rewards.

With ``algo.rewards=[task, d1_integer, d1_strict_format, d1_soft_format, d1_xml_count]`` and unit weights a
run uses d1's exact reward sum: correctness 2.0 (the ``task`` reward of these tasks), an integer answer 0.5,
the strict and the soft XML format 0.5 each, and up to 0.5 for the four XML tags (docs/methods.md, "Rewards").
The answer these rewards read is d1's: the text between the last ``<answer>`` and the ``</answer>`` after it.
"""

from __future__ import annotations

import re

from dllm_lab.rl.rewards import RewardBatch, register_reward

# d1's patterns; "." does not cross a line, as in their code (re.match without flags)
STRICT_FORMAT = re.compile(r"^<reasoning>\n.*?\n</reasoning>\n<answer>\n.*?\n</answer>\n$")
SOFT_FORMAT = re.compile(r"<reasoning>.*?</reasoning>\s*<answer>.*?</answer>")


def xml_answer(text: str) -> str:
    """d1's answer extraction: after the last ``<answer>``, before the next ``</answer>``, stripped."""
    return text.split("<answer>")[-1].split("</answer>")[0].strip()


def xml_count(text: str) -> float:
    """0.125 for each of ``<reasoning>\\n``, ``\\n</reasoning>\\n``, ``\\n<answer>\\n`` and ``\\n</answer>`` present
    exactly once, less 0.001 per character written after the answer's closing tag (up to 0.5)."""
    score = 0.0
    if text.count("<reasoning>\n") == 1:
        score += 0.125
    if text.count("\n</reasoning>\n") == 1:
        score += 0.125
    if text.count("\n<answer>\n") == 1:
        score += 0.125 - 0.001 * len(text.split("\n</answer>\n")[-1])
    if text.count("\n</answer>") == 1:
        score += 0.125 - 0.001 * (len(text.split("\n</answer>")[-1]) - 1)
    return score


@register_reward("d1_integer")
def integer_reward(batch: RewardBatch) -> list[float]:
    """0.5 when the answer is a non-negative integer written in digits."""
    return [0.5 if xml_answer(c).isdigit() else 0.0 for c in batch.completions]


@register_reward("d1_strict_format")
def strict_format_reward(batch: RewardBatch) -> list[float]:
    """0.5 for exactly ``<reasoning>\\n...\\n</reasoning>\\n<answer>\\n...\\n</answer>\\n``."""
    return [0.5 if STRICT_FORMAT.match(c) else 0.0 for c in batch.completions]


@register_reward("d1_soft_format")
def soft_format_reward(batch: RewardBatch) -> list[float]:
    """0.5 for a reasoning block followed by an answer block, whitespace between them free."""
    return [0.5 if SOFT_FORMAT.match(c) else 0.0 for c in batch.completions]


@register_reward("d1_xml_count")
def xml_count_reward(batch: RewardBatch) -> list[float]:
    """:func:`xml_count` of each completion."""
    return [xml_count(c) for c in batch.completions]


D1_MATH_REWARDS = ("task", "d1_integer", "d1_strict_format", "d1_soft_format", "d1_xml_count")
