"""``DecodeConfig``: every decoding knob in one typed, validated dataclass.

Validation happens before any forward pass; each error names the setting (as a Hydra override,
``decoder.<field>``) and how to fix it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from dllm_lab.config import ConfigError

SCORERS = ("low_confidence", "margin", "entropy", "random")
SCHEDULES = ("linear",)


@dataclass(frozen=True)
class DecodeConfig:
    """Settings of the denoising loop (ALGORITHMS.md sections 1-2).

    gen_length: tokens generated after the prompt (the canvas' generation region ``L``).
    block_length: semi-autoregressive block size; ``gen_length`` (or ``None``) is full diffusion.
    steps: denoising steps over the whole generation (``steps / num_blocks`` per block).
    scorer: how still-masked positions are ranked for commitment.
    schedule: how many tokens each step commits (``linear``: LLaDA's even split).
    temperature: Gumbel-max sampling temperature (float64 noise); 0 is greedy.
    top_k, top_p: optional filtering of the logits before sampling.
    cfg_scale: classifier-free guidance weight ``w`` (each step then costs 2 forward passes).
    logits_eos_inf: forbid EOS as a candidate token (LLaDA option).
    confidence_eos_eot_inf: never commit a position whose candidate is EOS/EOT (LLaDA option).
    seed: seed of the sampling noise (``None``: torch's global generator).
    """

    gen_length: int = 64
    block_length: int | None = 16
    steps: int = 64
    scorer: str = "low_confidence"
    schedule: str = "linear"
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    cfg_scale: float = 0.0
    logits_eos_inf: bool = False
    confidence_eos_eot_inf: bool = False
    seed: int | None = None

    def __post_init__(self) -> None:
        self.validate()

    @property
    def block(self) -> int:
        return self.block_length or self.gen_length

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block

    @property
    def steps_per_block(self) -> int:
        return self.steps // self.num_blocks

    def validate(self, prefix: str = "decoder") -> None:
        def need(ok: bool, field: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"{prefix}.{field}={getattr(self, field)!r}: {message}")

        need(self.gen_length > 0, "gen_length", "must be a positive number of tokens")
        need(self.block > 0, "block_length", "must be positive (or null for full diffusion)")
        need(
            self.gen_length % self.block == 0,
            "block_length",
            f"must divide gen_length={self.gen_length}; e.g. block_length={_divisor_hint(self.gen_length, self.block)}",
        )
        need(self.scorer in SCORERS, "scorer", f"choose one of {SCORERS}")
        need(self.schedule in SCHEDULES, "schedule", f"choose one of {SCHEDULES}")
        need(self.steps > 0, "steps", "must be positive")
        need(
            self.steps % self.num_blocks == 0,
            "steps",
            f"must be a multiple of the number of blocks ({self.num_blocks} = gen_length/block_length)",
        )
        need(self.steps <= self.gen_length, "steps", f"must be <= gen_length={self.gen_length} (>= 1 token per step)")
        need(self.temperature >= 0, "temperature", "must be >= 0 (0 is greedy)")
        need(self.top_k is None or self.top_k > 0, "top_k", "must be a positive integer or null")
        need(self.top_p is None or 0 < self.top_p <= 1, "top_p", "must be in (0, 1] or null")
        need(self.cfg_scale >= 0, "cfg_scale", "must be >= 0 (0 disables classifier-free guidance)")

    @classmethod
    def from_dict(cls, values: dict[str, Any], prefix: str = "decoder") -> DecodeConfig:
        """Build from a mapping (e.g. the Hydra ``decoder`` group); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{prefix}: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> DecodeConfig:
        return dataclasses.replace(self, **changes)


def _divisor_hint(n: int, near: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: abs(d - near))
