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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:
    from dllm_lab.decoding.loop import DecodeOutput

NEEDS = frozenset({"entropy", "argmax", "logits"})


@dataclass
class DecodeState:
    """What a callback can see. Tensors are views of the loop's own; do not modify them.

    canvas: (B, P+L) current tokens; prompt_length: ``P``; B rows.
    masked: (B, L) bool, positions masked in ``canvas`` (in ``on_forward``: before this step's commit,
        i.e. the forward pass' input; in ``on_step``: after it).
    fixed: (B, L) bool, pre-filled template positions (never committed); ``None`` without a template.
    prediction: (B, L) committed tokens merged with the current candidate at every masked position
        (the model's full current answer, used for temporal signals).
    committed: (B, L) bool, positions committed at this step (``None`` in ``on_forward``).
    active: (B,) bool, rows this step commits in; finished: (B,) bool, rows stopped by ``request_stop``.
    phase: the hook being run: ``start``, ``forward``, ``step`` or ``end``.
    step: executed step index (0-based, one per forward step); block: block index; block_range: its
        ``(lo, hi)`` in the generation region; nfe: forward passes so far (a CFG step counts 2);
        nfe_per_sample: (B,) forward passes each row took part in while active;
        total_steps: scheduled steps of the decode (``None`` for adaptive rules);
        planned_nfe_per_sample: (B,) what ``nfe_per_sample`` will be if no row is stopped early
        (``None`` when data-dependent: adaptive rules, ``origin``).
    confidence: (B, L) scores of this step (``-inf`` where not eligible).
    entropy, argmax: (B, L) per-position entropy (nats) / argmax token, only when a callback needs them.
    logits: (B, L, V) processed logits of the generation region, only when a callback needs them.
    """

    canvas: torch.Tensor
    prompt_length: int
    step: int = -1
    block: int = 0
    block_range: tuple[int, int] = (0, 0)
    nfe: int = 0
    total_steps: int | None = None
    nfe_per_sample: torch.Tensor | None = None
    planned_nfe_per_sample: torch.Tensor | None = None
    fixed: torch.Tensor | None = None
    active: torch.Tensor | None = None
    finished: torch.Tensor | None = None
    prediction: torch.Tensor | None = None
    committed: torch.Tensor | None = None
    masked: torch.Tensor | None = None
    confidence: torch.Tensor | None = None
    entropy: torch.Tensor | None = None
    argmax: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    stop_rows: torch.Tensor | None = field(default=None, repr=False)
    fill: torch.Tensor | None = field(default=None, repr=False)
    phase: str = field(default="start", repr=False)

    def request_stop(self, rows: torch.Tensor, fill: torch.Tensor | None = None) -> None:
        """Finish ``rows`` (B,) bool after this step; ``fill`` (B, L) bool (``on_forward`` only): masked
        positions of those rows committed now with this pass' argmax. Requests of several callbacks add
        up."""
        rows = rows.to(torch.bool)
        self.stop_rows = rows if self.stop_rows is None else self.stop_rows | rows
        if fill is not None:
            if self.phase != "forward":
                raise RuntimeError("request_stop(fill=...) is only possible from on_forward (the fill needs this "
                                   "pass' argmax and must be part of the step's commit)")
            fill = fill.to(torch.bool) & rows[:, None]
            self.fill = fill if self.fill is None else self.fill | fill


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
