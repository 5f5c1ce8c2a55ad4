"""The decoding engine: one batched denoising loop, composable scorers and schedules, callbacks.

>>> out = decode(lm, ["What is 2+3?"], DecodeConfig(gen_length=32, block_length=8, steps=32))
>>> out.texts[0], out.nfe
"""

from dllm_lab.decoding.callbacks import DecodeCallback, DecodeState, SpeedMeter, TrajectoryRecorder
from dllm_lab.decoding.config import DecodeConfig
from dllm_lab.decoding.loop import DecodeOutput, decode, prepare_prompts
from dllm_lab.decoding.schedules import linear_counts
from dllm_lab.decoding.scorers import entropy, filter_logits, position_scores, sample_tokens

__all__ = [
    "DecodeCallback", "DecodeConfig", "DecodeOutput", "DecodeState", "SpeedMeter", "TrajectoryRecorder",
    "decode", "entropy", "filter_logits", "linear_counts", "position_scores", "prepare_prompts", "sample_tokens",
]
