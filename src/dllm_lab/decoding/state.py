"""What the denoising loop shows its callbacks (:class:`DecodeState`) and returns (:class:`DecodeOutput`).

A leaf of the decoding package: callbacks, controllers and the loop all import these two types from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

NEEDS = frozenset({"entropy", "argmax", "logits"})  # optional per-step tensors a callback may ask for


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


@dataclass
class DecodeOutput:
    """``sequences`` (B, L) generated ids; ``texts`` decoded up to the first EOS (with a template: every
    non-end token); ``nfe`` forward passes of the batch; ``prompt_ids`` (B, P) left-padded prompts;
    ``nfe_per_sample`` (B,) passes each row took part in; ``extras`` what callbacks gathered."""

    sequences: torch.Tensor
    texts: list[str]
    nfe: int
    prompt_ids: torch.Tensor
    nfe_per_sample: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)
