"""The decoding engine: one batched denoising loop over composable parts, with no Lightning in it.

A decoder = scorer x schedule (or adaptive rule) x blocks x modifiers (+ infilling template, early exit);
see :class:`DecodeConfig` and the presets in ``configs/decoder/``.

>>> out = decode(lm, ["What is 2+3?"], DecodeConfig(gen_length=32, block_length=8, steps=32))
>>> out.texts[0], out.nfe
"""

from dllm_lab.decoding.callbacks import DecodeCallback, SpeedMeter, TrajectoryRecorder
from dllm_lab.decoding.config import DecodeConfig
from dllm_lab.decoding.infill import AnswerLikelihood, EarlyExit, InfillTemplate, answer_log_likelihood
from dllm_lab.decoding.loop import decode, prepare_prompts
from dllm_lab.decoding.rules import ar_med_select, factor_select, med_select, select_topk, threshold_select
from dllm_lab.decoding.schedules import ascending_counts, ascending_schedule, block_plan, linear_counts, origin_counts
from dllm_lab.decoding.scorers import (
    apply_eoser,
    entropy,
    eoser_gamma,
    filter_logits,
    position_scores,
    sample_tokens,
)
from dllm_lab.decoding.state import DecodeOutput, DecodeState

__all__ = [
    "AnswerLikelihood", "DecodeCallback", "DecodeConfig", "DecodeOutput", "DecodeState", "EarlyExit", "InfillTemplate",
    "SpeedMeter", "TrajectoryRecorder", "answer_log_likelihood", "apply_eoser", "ar_med_select", "ascending_counts",
    "ascending_schedule", "block_plan", "decode", "entropy", "eoser_gamma", "factor_select", "filter_logits",
    "linear_counts", "med_select", "origin_counts", "position_scores", "prepare_prompts", "sample_tokens",
    "select_topk", "threshold_select",
]
