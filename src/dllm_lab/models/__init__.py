"""Model layer: one adapter (:class:`DiffusionLM`) over LLaDA, Dream and any masked LM; the embedded tiny
model's builders; chat formatting and left padding of prompt batches."""

from dllm_lab.models.adapter import FAMILIES, DiffusionLM, detect_family, load_model
from dllm_lab.models.chat import ChatFormat, left_pad
from dllm_lab.models.tiny import build_tiny_model, build_tokenizer

__all__ = [
    "FAMILIES", "ChatFormat", "DiffusionLM", "build_tiny_model", "build_tokenizer", "detect_family",
    "left_pad", "load_model",
]
