"""Decoding callbacks: the Lightning-style extension point of the denoising loop.

The loop calls ``on_decode_start(state)`` once; at every step ``on_forward(state)`` after the forward
pass (before the commit) and ``on_step(state)`` after the commit; ``on_decode_end(state, output)`` once.
What a callback gathers goes into ``output.extras[name]``.

Asking for more: a callback lists in ``needs`` the optional per-step tensors it reads (``"entropy"``,
``"argmax"``, ``"logits"``); the loop computes each only when some callback asks, from the softmax it
already has, so memory grows with what is asked, not with what could be.

Stopping (controllers such as early exit): ``state.request_stop(rows, fill)`` finishes ``rows`` (B,)
bool. From ``on_forward``, ``fill`` (B, L) bool names still-masked positions of those rows to commit in
this same step with this pass' argmax (no extra forward pass); from ``on_step`` only ``rows`` is
accepted. Finished rows are never committed to again and stop counting NFE; when every row is finished
the loop ends without another forward pass.
"""

from __future__ import annotations

import time

import torch

from dllm_lab.decoding.state import DecodeOutput, DecodeState


class DecodeCallback:
    """Base class; override the hooks you need. ``name`` keys the callback's result in ``extras``;
    ``needs`` lists the optional per-step tensors it reads (subset of ``entropy``, ``argmax``, ``logits``)."""

    name: str = "callback"
    needs: frozenset[str] = frozenset()

    def on_decode_start(self, state: DecodeState) -> None:
        pass

    def on_forward(self, state: DecodeState) -> None:
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

    Stored as int32 / bool on CPU, so memory is ``steps * B * L * 5`` bytes; confidences and entropies
    (float16) are kept only when ``keep_confidence`` / ``keep_entropy`` are set (the loop computes the
    entropy only then). ``output.extras["trajectory"]`` holds stacked tensors ``prediction`` (S, B, L),
    ``committed`` (S, B, L), ``active`` (S, B) and, if asked, ``confidence`` / ``entropy`` (S, B, L).
    """

    name = "trajectory"

    def __init__(self, keep_confidence: bool = False, keep_entropy: bool = False) -> None:
        self.keep_confidence = keep_confidence
        self.keep_entropy = keep_entropy
        self.needs = frozenset({"entropy"}) if keep_entropy else frozenset()

    def on_decode_start(self, state: DecodeState) -> None:
        self._pred: list[torch.Tensor] = []
        self._committed: list[torch.Tensor] = []
        self._conf: list[torch.Tensor] = []
        self._ent: list[torch.Tensor] = []
        self._active: list[torch.Tensor] = []

    def on_step(self, state: DecodeState) -> None:
        self._pred.append(state.prediction.to("cpu", torch.int32, non_blocking=True))
        self._committed.append(state.committed.to("cpu", non_blocking=True))
        self._active.append(state.active.to("cpu", non_blocking=True))
        if self.keep_confidence and state.confidence is not None:
            self._conf.append(state.confidence.to("cpu", torch.float16, non_blocking=True))
        if self.keep_entropy and state.entropy is not None:
            self._ent.append(state.entropy.to("cpu", torch.float16, non_blocking=True))

    def on_decode_end(self, state: DecodeState, output: DecodeOutput) -> None:
        B, L = state.canvas.shape[0], state.canvas.shape[1] - state.prompt_length
        if not self._pred:  # no step ran (e.g. everything pre-filled)
            empty = torch.empty(0, B, L)
            record = {"prediction": empty.int(), "committed": empty.bool(), "active": torch.empty(0, B).bool()}
        else:
            record = {"prediction": torch.stack(self._pred), "committed": torch.stack(self._committed),
                      "active": torch.stack(self._active)}
        if self._conf:
            record["confidence"] = torch.stack(self._conf)
        if self._ent:
            record["entropy"] = torch.stack(self._ent)
        output.extras[self.name] = record
