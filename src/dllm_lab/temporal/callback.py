"""Temporal signals recorded during decoding (Time Is a Feature, Wang et al. 2025, arXiv 2508.09138).

:class:`TemporalCallback` plugs into :func:`dllm_lab.decoding.decode`. At every step it keeps the full
current prediction ``(B, L)`` (committed tokens plus the argmax at masked positions) as int32 on CPU:
one device-to-host copy per step and no extra forward pass. Everything else happens once, at the end:

1. the *answer region* of each row is its tokens up to the first end token (EOS/EOT), masks dropped,
   as in :meth:`DiffusionLM.decode_completion` (templated decodes drop end tokens instead of cutting,
   as ``infill.template_text`` does); what follows an end token never reaches the text;
2. rows equal to the same sample's previous step are detected with one vectorised comparison, the
   others are keyed by the bytes of their answer region;
3. each distinct answer region is decoded to text and parsed once (shared across steps and samples),
   so the parse of a step costs nothing unless its answer region changed.

Per sample, ``output.extras["temporal"]`` then holds a :class:`TemporalSample`: the answer of every step,
its correctness (when examples are given), the TCV vote per weighting, TSE, confidence, answer changes.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from dllm_lab.decoding.callbacks import DecodeCallback
from dllm_lab.decoding.state import DecodeOutput, DecodeState
from dllm_lab.temporal.settings import TemporalSettings
from dllm_lab.temporal.signals import answer_changes, temporal_entropy_and_confidence, temporal_vote_index

if TYPE_CHECKING:
    from dllm_lab.models.adapter import DiffusionLM
    from dllm_lab.tasks.base import Example, Task


@dataclass
class TemporalSample:
    """One sample's temporal record.

    answers: (S,) parsed answer per step the sample was decoded in (``state.active``), ``None`` where
        nothing parsed; ``answers[-1]`` is always the answer of the output text. steps: (S,) the loop's
        step index of each entry (a row never decoded has ``[number of steps]``: the output).
    correct: (S,) correctness per step, ``None`` without examples.
    votes / vote_correct: per weighting, the TCV answer (``None``: no vote) and its correctness.
    tse / confidence: temporal semantic entropy (nats unless ``tse_base`` says otherwise) and
        normalised confidence in [0, 1]; computed here once, and what the TCR reward of RL uses.
        answer_changes: changes between consecutive parsed answers.
    """

    answers: list[Any]
    steps: list[int]
    correct: list[bool] | None
    votes: dict[str, Any]
    vote_correct: dict[str, bool] | None
    tse: float
    confidence: float
    answer_changes: int

    @property
    def final_answer(self) -> Any | None:
        return self.answers[-1]

    @property
    def ever_correct(self) -> bool | None:
        return None if self.correct is None else any(self.correct)

    def as_dict(self) -> dict[str, Any]:
        """JSON-friendly: answers as strings (``None`` kept), floats rounded to 6 digits."""

        def text(a: Any) -> str | None:
            return None if a is None else str(a)

        return {
            "step_answers": [text(a) for a in self.answers],
            "steps": self.steps,
            "step_correct": self.correct,
            "votes": {w: text(a) for w, a in self.votes.items()},
            "vote_correct": self.vote_correct,
            "tse": round(self.tse, 6),
            "confidence": round(self.confidence, 6),
            "answer_changes": self.answer_changes,
        }


def parse_trajectories(
    predictions: torch.Tensor,
    decode_text: Callable[[np.ndarray], str],
    parse: Callable[[str], Any],
    stop_ids: Sequence[int] = (),
    drop_ids: Sequence[int] = (),
) -> tuple[list[list[Any]], int]:
    """Parsed answers (B lists of S) of predictions ``(S, B, L)``, decoding and parsing each distinct text once.

    A row's text is ``decode_text`` of its ids before the first of ``stop_ids``, without ``drop_ids``
    (an int numpy array). Rows with the same ids share one ``decode_text`` and one ``parse`` call; a row
    equal to the same sample's previous step is found without hashing. Returns the answers and the
    number of ``parse`` calls.
    """
    if predictions.dim() != 3:
        raise ValueError(f"predictions must be (steps, batch, length), got shape {tuple(predictions.shape)}")
    S, B, L = predictions.shape
    if S == 0:
        raise ValueError("empty trajectory: no decoding step was recorded; run at least one step")
    pred = predictions.to("cpu", torch.int32)
    ignored = torch.isin(pred, torch.tensor(list(drop_ids), dtype=torch.int32))  # (S, B, L)
    if stop_ids:
        is_stop = torch.isin(pred, torch.tensor(list(stop_ids), dtype=torch.int32))  # (S, B, L)
        first = torch.where(is_stop.any(-1), is_stop.to(torch.uint8).argmax(-1), L)  # (S, B) first stop or L
        ignored |= torch.arange(L) >= first[..., None]
    content = pred.masked_fill(ignored, -1)  # (S, B, L): equal rows <=> equal texts' ids (ids are >= 0)
    same = torch.zeros(S, B, dtype=torch.bool)
    same[1:] = (content[1:] == content[:-1]).all(-1)  # (S, B) unchanged since the previous step

    rows, same_as_prev = content.numpy(), same.tolist()
    keys: dict[bytes, int] = {}
    first_seen: list[tuple[int, int]] = []
    index = [[0] * B for _ in range(S)]  # (S, B) -> distinct content
    for s in range(S):
        for b in range(B):
            if same_as_prev[s][b]:
                index[s][b] = index[s - 1][b]
                continue
            k = keys.setdefault(rows[s, b].tobytes(), len(first_seen))
            if k == len(first_seen):
                first_seen.append((s, b))
            index[s][b] = k
    parsed = []
    for s, b in first_seen:
        row = rows[s, b]
        parsed.append(parse(decode_text(row[row >= 0])))
    return [[parsed[index[s][b]] for s in range(S)] for b in range(B)], len(first_seen)


class TemporalCallback(DecodeCallback):
    """Per-step answers, TCV votes, TSE and confidence of every sample of one :func:`decode` call.

    ``lm`` decodes ids to text, ``task`` parses (``parse_answer``), clusters (``is_equivalent``) and
    scores (``answer_is_correct``). ``examples``: the batch's examples in prompt order, for correctness;
    ``None`` skips it. ``settings``: weightings, skip ratio and base (default: the paper's). Results:
    ``output.extras["temporal"]``, a list of :class:`TemporalSample`.

    A sample's trajectory holds the steps it was decoded in (``state.active``; all steps when the loop
    does not say), so a row that stops early has a shorter trajectory and its own ``S``. Its last entry
    is the answer of the output text: identical to the last prediction unless the row stopped with
    masks left (early exit); a row never decoded gets the output's answer as its one entry.
    Texts follow the loop: cut at the first EOS/EOT, or, for templated (infill) decodes, with end and
    mask tokens dropped. ``rows`` / ``parse_calls`` count the rows seen and parser calls of the last decode.
    """

    name = "temporal"

    def __init__(
        self,
        lm: DiffusionLM,
        task: Task,
        examples: Sequence[Example] | None = None,
        settings: TemporalSettings | None = None,
    ) -> None:
        self.lm, self.task = lm, task
        self.examples = None if examples is None else list(examples)
        self.settings = settings or TemporalSettings()
        self.rows = self.parse_calls = 0
        self._steps: list[torch.Tensor] = []
        self._active: list[torch.Tensor | None] = []
        self._templated = False

    def on_decode_start(self, state: DecodeState) -> None:
        batch = state.canvas.shape[0]
        if self.examples is not None and len(self.examples) != batch:
            raise ValueError(
                f"mismatched lengths: TemporalCallback got {len(self.examples)} examples for a batch of "
                f"{batch} prompts; pass the examples of this batch, in prompt order"
            )
        self._steps, self._active = [], []
        self._templated = getattr(state, "fixed", None) is not None  # infill template: texts drop, not cut

    def on_step(self, state: DecodeState) -> None:
        # the only per-step work: one (B, L) int32 copy to the CPU (parsing happens once, at the end)
        self._steps.append(state.prediction.to("cpu", torch.int32, copy=True))
        active = getattr(state, "active", None)
        self._active.append(None if active is None else active.to("cpu", torch.bool, copy=True))

    def on_decode_end(self, state: DecodeState, output: DecodeOutput) -> None:
        B = state.canvas.shape[0]
        S = len(self._steps)
        # the output itself is appended as a last row per sample: its answer ends every trajectory
        rows = torch.stack([*self._steps, output.sequences.to("cpu", torch.int32)])  # (S+1, B, L)
        active = [torch.ones(B, dtype=torch.bool) if a is None else a for a in self._active]
        active_steps = torch.stack(active).T.tolist() if S else [[] for _ in range(B)]  # (B, S)
        self._steps, self._active = [], []
        lm = self.lm
        # the texts of DiffusionLM.decode_completion (cut at EOS/EOT, masks dropped) or, for templated
        # decodes, of infill.template_text (end and mask tokens dropped, not cut at); the tokenizer gets
        # numpy ids directly, which skips transformers' per-token type checks of Python lists
        end_ids = lm.end_token_ids
        stop_ids, drop_ids = ((), (lm.mask_token_id, *end_ids)) if self._templated else (end_ids, (lm.mask_token_id,))
        answers, self.parse_calls = parse_trajectories(
            rows, lambda ids: lm.tokenizer.decode(ids, skip_special_tokens=True), self.task.parse_answer,
            stop_ids, drop_ids,
        )
        self.rows = rows.shape[0] * B
        examples = self.examples if self.examples is not None else [None] * B
        samples = []
        for b in range(B):
            steps = [s for s in range(S) if active_steps[b][s]] or [S]  # never decoded: the output only
            trajectory = [answers[b][s] for s in steps]
            trajectory[-1] = answers[b][S]
            samples.append(self.summarise(trajectory, examples[b], steps))
        output.extras[self.name] = samples

    def summarise(
        self, answers: list[Any], example: Example | None = None, steps: list[int] | None = None
    ) -> TemporalSample:
        """The :class:`TemporalSample` of one trajectory of parsed answers (``steps``: their indices)."""
        equivalent, cfg = self.task.is_equivalent, self.settings
        correct = None if example is None else self._step_correct(answers, example)
        votes: dict[str, Any] = {}
        vote_correct: dict[str, bool] = {}
        for w in cfg.vote_weightings:
            i = temporal_vote_index(answers, w, cfg.vote_alpha, equivalent)
            votes[w] = None if i is None else answers[i]
            vote_correct[w] = i is not None and correct is not None and correct[i]
        tse, confidence = temporal_entropy_and_confidence(
            answers, cfg.tse_skip_ratio, cfg.tse_weighting, cfg.tse_alpha, equivalent, cfg.tse_base
        )
        return TemporalSample(
            answers=answers, steps=list(range(len(answers))) if steps is None else list(steps), correct=correct,
            votes=votes, vote_correct=None if correct is None else vote_correct, tse=tse, confidence=confidence,
            answer_changes=answer_changes(answers, equivalent),
        )

    def _step_correct(self, answers: list[Any], example: Example) -> list[bool]:
        """Correctness per step, checking each distinct (hashable) answer once."""
        memo: dict[Any, bool] = {}
        out = []
        for a in answers:
            if a is None:
                out.append(False)
                continue
            try:
                ok = memo.get(a)
            except TypeError:
                ok = None
            if ok is None:
                ok = bool(self.task.answer_is_correct(a, example))
                with contextlib.suppress(TypeError):
                    memo[a] = ok
            out.append(ok)
        return out
