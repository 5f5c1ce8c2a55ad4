"""Model layer: one adapter (:class:`DiffusionLM`) over LLaDA, Dream and any masked LM."""

from dllm_lab.models.adapter import FAMILIES, DiffusionLM, detect_family, load_model
from dllm_lab.models.tiny import build_tiny_model, build_tokenizer

__all__ = ["FAMILIES", "DiffusionLM", "build_tiny_model", "build_tokenizer", "detect_family", "load_model"]
