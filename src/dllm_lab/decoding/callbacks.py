"""Decoding callbacks: the Lightning-style extension point of the denoising loop.

The loop calls ``on_decode_start(state)`` once, ``on_step(state)`` after every commit, and
``on_decode_end(state, output)`` once; what a callback gathers goes into ``output.extras[name]``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from dllm_lab.decoding.loop import DecodeOutput


@dataclass
class DecodeState:
    """What a callback can see. Tensors are views of the loop's own; do not modify them.

    canvas: (B, P+L) current tokens, masks included; prompt_length: ``P``.
    prediction: (B, L) committed tokens merged with the current candidate at every masked position
        (the model's full current answer, used for temporal signals).
    committed: (B, L) bool, positions committed at this step. masked: (B, L) bool, still masked after it.
    step: global step index (0-based); block: current block index; nfe: forward passes so far.
    confidence: (B, L) scores of this step (``-inf`` where not eligible), when the loop computed them.
    """

    canvas: torch.Tensor
    prompt_length: int
    step: int = -1
    block: int = 0
    nfe: int = 0
    prediction: torch.Tensor | None = None
    committed: torch.Tensor | None = None
    masked: torch.Tensor | None = None
    confidence: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)


class DecodeCallback:
    """Base class; override the hooks you need. ``name`` keys the callback's result in ``extras``."""

    name: str = "callback"

    def on_decode_start(self, state: DecodeState) -> None:
        pass

    def on_step(self, state: DecodeState) -> None:
        pass

    def on_decode_end(self, state: DecodeState, output: DecodeOutput) -> None:
        pass


class SpeedMeter(DecodeCallback):
    """Wall time, NFE and generated tokens per second (prompt tokens are not counted)."""

    name = "speed"

    def on_decode_start(self, state: DecodeState) -> None:
        self._start = time.perf_counter()

    def on_decode_end(self, state: DecodeState, output: DecodeOutput) -> None:
        wall = time.perf_counter() - self._start
        generated = output.sequences.numel()
        output.extras[self.name] = {
            "wall_s": wall,
            "nfe": output.nfe,
            "generated_tokens": generated,
            "tokens_per_s": generated / wall if wall > 0 else float("nan"),
        }


class TrajectoryRecorder(DecodeCallback):
    """Per step: the full current prediction ``(B, L)`` token ids and the committed positions.

    Stored as int32 / bool on CPU, so memory is ``steps * B * L * 5`` bytes; confidences are kept
    only when ``keep_confidence`` is set. ``output.extras["trajectory"]`` then holds stacked tensors
    ``prediction`` (S, B, L), ``committed`` (S, B, L) and, if asked, ``confidence`` (S, B, L).
    """

    name = "trajectory"

    def __init__(self, keep_confidence: bool = False) -> None:
        self.keep_confidence = keep_confidence

    def on_decode_start(self, state: DecodeState) -> None:
        self._pred: list[torch.Tensor] = []
        self._committed: list[torch.Tensor] = []
        self._conf: list[torch.Tensor] = []

    def on_step(self, state: DecodeState) -> None:
        self._pred.append(state.prediction.to("cpu", torch.int32, non_blocking=True))
        self._committed.append(state.committed.to("cpu", non_blocking=True))
        if self.keep_confidence and state.confidence is not None:
            self._conf.append(state.confidence.to("cpu", torch.float16, non_blocking=True))

    def on_decode_end(self, state: DecodeState, output: DecodeOutput) -> None:
        record = {"prediction": torch.stack(self._pred), "committed": torch.stack(self._committed)}
        if self._conf:
            record["confidence"] = torch.stack(self._conf)
        output.extras[self.name] = record
