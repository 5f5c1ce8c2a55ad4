"""Reasoning-as-infilling, early exit and posterior sampling (No Compute Left Behind, 2025,
arXiv 2510.19990; docs/methods.md "Infilling, early exit, posterior sampling").

The generation region becomes a template ``[m x R | delimiter | m x A | closing | EOS ...]`` whose
non-mask tokens are pre-filled and fixed from the start: they are never committed, never counted by the
schedules (which count per-row masked tokens) and never changed. :class:`EarlyExit` is a decoding
callback that stops a row as soon as its answer block is certain.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dllm_lab.decoding.callbacks import DecodeCallback
from dllm_lab.decoding.config import DecodeConfig
from dllm_lab.decoding.state import DecodeOutput, DecodeState
from dllm_lab.errors import ConfigError


def _encode(tokenizer: Any, text: str) -> tuple[int, ...]:
    return tuple(tokenizer.encode(text, add_special_tokens=False)) if text else ()


@dataclass(frozen=True)
class InfillTemplate:
    """The reasoning-as-infilling layout of a generation region of ``gen_length`` tokens:
    ``[m x reasoning_length | delimiter | m x answer_length | closing | EOS padding]``."""

    gen_length: int
    reasoning_length: int
    delimiter: tuple[int, ...]
    answer_length: int
    closing: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.length > self.gen_length:
            raise ConfigError(
                f"the infilling template needs {self.length} tokens (reasoning {self.reasoning_length} + delimiter "
                f"{len(self.delimiter)} + answer {self.answer_length} + closing {len(self.closing)}) but "
                f"decoder.gen_length={self.gen_length}; lower decoder.infill_reasoning_length or "
                "decoder.infill_answer_length, shorten the delimiter, or raise decoder.gen_length"
            )

    @classmethod
    def from_config(cls, cfg: DecodeConfig, tokenizer: Any) -> InfillTemplate:
        return cls.from_text(tokenizer, cfg.gen_length, cfg.infill_delimiter, cfg.infill_answer_length,
                             cfg.infill_closing, cfg.infill_reasoning_length)

    @classmethod
    def from_text(cls, tokenizer: Any, gen_length: int, delimiter: str, answer_length: int, closing: str,
                  reasoning_length: int | None = None) -> InfillTemplate:
        """Tokenize the delimiter and closing text; ``reasoning_length`` defaults to what is left."""
        delim, close = _encode(tokenizer, delimiter), _encode(tokenizer, closing)
        if reasoning_length is None:
            reasoning_length = max(gen_length - len(delim) - answer_length - len(close), 0)
        return cls(gen_length, reasoning_length, delim, answer_length, close)

    @property
    def length(self) -> int:
        return self.reasoning_length + len(self.delimiter) + self.answer_length + len(self.closing)

    @property
    def answer_start(self) -> int:
        return self.reasoning_length + len(self.delimiter)

    def answer_mask(self) -> torch.Tensor:
        """(L,) bool: the answer block ``m x A``."""
        mask = torch.zeros(self.gen_length, dtype=torch.bool)
        mask[self.answer_start : self.answer_start + self.answer_length] = True
        return mask

    def canvas(
        self, batch: int, mask_id: int, eos_id: int, answers: Sequence[Sequence[int]] | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Initial generation region (B, L) long and its pre-filled positions (B, L) bool.

        With ``answers`` (posterior sampling ``p(r | c, a*)``), each row's answer block and closing are
        pre-filled with ``answer ids + closing + EOS padding``, so only the reasoning is decoded.
        """
        R, a0, L = self.reasoning_length, self.answer_start, self.gen_length
        row = torch.full((L,), eos_id, dtype=torch.long)
        row[:R] = mask_id
        row[R:a0] = torch.tensor(self.delimiter, dtype=torch.long)
        row[a0 : a0 + self.answer_length] = mask_id
        row[a0 + self.answer_length : self.length] = torch.tensor(self.closing, dtype=torch.long)
        gen = row.repeat(batch, 1)  # (B, L)
        if answers is not None:
            if len(answers) != batch:
                raise ValueError(f"posterior sampling needs one answer per prompt: {len(answers)} for {batch} prompts")
            self._check_fits(answers)
            for b, ans in enumerate(answers):  # once per decode, before the loop
                filled = list(ans) + list(self.closing)
                gen[b, a0 : self.length] = eos_id
                gen[b, a0 : a0 + len(filled)] = torch.tensor(filled, dtype=torch.long)
        return gen, gen != mask_id


    def training_row(
        self, reasoning: Sequence[int], answer: Sequence[int], eos_id: int
    ) -> tuple[list[int], list[bool]] | None:
        """A reference completion laid out as this template for SFT: ``reasoning + EOS fill | delimiter |
        answer + EOS fill | closing | EOS`` (``gen_length`` ids) and which of them are pre-filled at decode
        time (delimiter, closing and the EOS tail: never masked, never a target). ``None`` when the
        reasoning or the answer does not fit its block."""
        R, A = self.reasoning_length, self.answer_length
        if len(reasoning) > R or len(answer) > A:
            return None
        ids = [*reasoning, *[eos_id] * (R - len(reasoning)), *self.delimiter, *answer, *[eos_id] * (A - len(answer)),
               *self.closing]
        fixed = [False] * R + [True] * len(self.delimiter) + [False] * A + [True] * len(self.closing)
        tail = self.gen_length - len(ids)
        return ids + [eos_id] * tail, fixed + [True] * tail

    def _check_fits(self, answers: Sequence[Sequence[int]]) -> None:
        for b, ans in enumerate(answers):
            if len(ans) > self.answer_length:
                raise ConfigError(
                    f"gold answer {b} has {len(ans)} tokens but decoder.infill_answer_length={self.answer_length}; "
                    "raise decoder.infill_answer_length"
                )

    def answer_targets(self, answers: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        """``targets`` (B, L) long, each row's gold answer ids at the start of the answer block (0 elsewhere),
        and ``positions`` (B, L) bool, where they sit: what :func:`answer_log_likelihood` scores."""
        self._check_fits(answers)
        a0 = self.answer_start
        targets = torch.zeros(len(answers), self.gen_length, dtype=torch.long)
        positions = torch.zeros(len(answers), self.gen_length, dtype=torch.bool)
        for b, ids in enumerate(answers):
            targets[b, a0 : a0 + len(ids)] = torch.tensor(list(ids), dtype=torch.long)
            positions[b, a0 : a0 + len(ids)] = True
        return targets, positions


def encode_answers(tokenizer: Any, answers: Sequence[str] | Sequence[Sequence[int]]) -> list[list[int]]:
    """Gold answers as token ids (text is tokenized without special tokens). A missing answer (``None``, e.g. a
    Countdown problem, which has no single gold answer) is refused, naming the row."""
    missing = [i for i, a in enumerate(answers) if a is None]
    if missing:
        raise ValueError(f"answers[{missing[0]}] is None ({len(missing)} of {len(answers)} rows): posterior sampling "
                         "pre-fills a gold answer, so pass only problems that have one (a task whose "
                         "gold_answer_text is None, such as countdown, cannot be used)")
    return [list(_encode(tokenizer, a)) if isinstance(a, str) else [int(t) for t in a] for a in answers]


def template_text(ids: torch.Tensor, tokenizer: Any, drop_ids: Sequence[int]) -> str:
    """Text of a templated completion (L,): end / mask tokens are dropped, not cut at, because a
    reasoning block that ends early is followed by the delimiter and the answer."""
    drop = set(int(i) for i in drop_ids)
    return tokenizer.decode([int(t) for t in ids.tolist() if int(t) not in drop], skip_special_tokens=True)


class EarlyExit(DecodeCallback):
    """Early exit on a confident answer block (No Compute Left Behind, 2025, Sec. "early exit").

    After each forward pass, ``U = reduction_{i in answer block, still masked} H_i`` (``max`` or ``mean``,
    nats); a row with ``U < threshold`` gets every masked answer position filled with its argmax from that
    same pass and stops (no extra NFE). A row whose answer block holds no mask has ``U = 0``: its answer
    is decided, so it stops too. ``output.extras["early_exit"]``: ``exited`` (B,) bool, ``exit_step``
    (B,) (-1: never), ``nfe`` (B,) forward passes used, ``nfe_saved`` (B,) against the same decode
    without exit (``None`` when the step count is data-dependent: adaptive rules, ``origin``), and
    ``uncertainty`` (S, B) the per-step ``U`` (NaN for rows not active at that step).
    """

    name = "early_exit"
    needs = frozenset({"entropy"})

    def __init__(self, answer_mask: torch.Tensor, threshold: float = 0.1, reduction: str = "max") -> None:
        if reduction not in ("max", "mean"):
            raise ValueError(f"reduction={reduction!r}: choose max or mean")
        self.answer_mask = answer_mask.to(torch.bool)  # (L,) or (B, L)
        self.threshold = threshold
        self.reduction = reduction

    def on_decode_start(self, state: DecodeState) -> None:
        B = state.canvas.shape[0]
        self._exit_step = torch.full((B,), -1, dtype=torch.long)
        self._u: list[torch.Tensor] = []

    def on_forward(self, state: DecodeState) -> None:
        assert state.entropy is not None and state.masked is not None and state.active is not None
        pending = self.answer_mask.to(state.masked.device) & state.masked  # (B, L)
        count = pending.sum(1)  # (B,)
        if self.reduction == "max":
            u = torch.where(pending, state.entropy, float("-inf")).amax(1)
        else:
            u = torch.where(pending, state.entropy, 0.0).sum(1) / count.clamp_min(1)
        u = torch.where(count > 0, u, torch.zeros_like(u))  # nothing left to decide
        self._u.append(torch.where(state.active, u, float("nan")).cpu())
        fire = state.active & (u < self.threshold)  # (B,)
        if bool(fire.any()):
            state.request_stop(fire, pending)
            self._exit_step[fire.cpu()] = state.step

    def on_decode_end(self, state: DecodeState, output: DecodeOutput) -> None:
        used = output.nfe_per_sample
        planned = state.planned_nfe_per_sample
        output.extras[self.name] = {
            "exited": self._exit_step >= 0,
            "exit_step": self._exit_step,
            "nfe": used,
            "nfe_saved": None if planned is None else planned - used,
            "uncertainty": torch.stack(self._u) if self._u else torch.empty(0, len(self._exit_step)),
        }


def answer_log_likelihood(logits: torch.Tensor, targets: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Mean ``log p(a*_i)`` over each row's gold answer positions (No Compute Left Behind's answer score).

    ``logits`` (B, L, V) of the generation region; ``targets`` (B, L) the gold token at each answer position
    (anything elsewhere); ``positions`` (B, L) bool, where the gold answer tokens sit. Returns (B,) float32,
    NaN for a row without positions. Log-probabilities are taken in float32 at least.
    """
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, L, V)
    picked = logp.gather(-1, targets.clamp_min(0)[..., None]).squeeze(-1)  # (B, L)
    picked = torch.where(positions, picked, torch.zeros_like(picked))
    count = positions.sum(-1)
    return torch.where(count > 0, picked.sum(-1) / count.clamp_min(1), torch.full_like(picked[:, 0], float("nan")))


class AnswerLikelihood(DecodeCallback):
    """The answer-likelihood score of a partial trace at every step, from that step's own forward pass.

    ``template`` is the decode's infilling layout and ``answers`` the gold answer ids, one list per row
    (No Compute Left Behind, docs/methods.md "Infilling, early exit, posterior sampling"). At each step, a row
    whose gold-answer positions are all still masked in the pass' input scores ``mean_i log p(a*_i | c, r)``
    with ``r`` the reasoning unmasked so far: no extra forward pass. Rows whose answer block is already
    (partly) decoded score NaN at that step. The score uses the decoder's processed logits (the mask token
    and any suppressed token are ``-inf``). ``output.extras["answer_likelihood"]``: ``score`` (S, B) and
    ``reasoning_unmasked`` (S, B), the share of the reasoning block unmasked in each pass' input.
    """

    name = "answer_likelihood"
    needs = frozenset({"logits"})

    def __init__(self, template: InfillTemplate, answers: Sequence[Sequence[int]]) -> None:
        self.template, self.answers = template, [list(a) for a in answers]

    def on_decode_start(self, state: DecodeState) -> None:
        B = state.canvas.shape[0]
        if len(self.answers) != B:
            raise ValueError(f"AnswerLikelihood got {len(self.answers)} gold answers for a batch of {B} prompts")
        self._targets, self._positions = self.template.answer_targets(self.answers)
        self._scores: list[torch.Tensor] = []
        self._unmasked: list[torch.Tensor] = []

    def on_forward(self, state: DecodeState) -> None:
        assert state.logits is not None and state.masked is not None
        device = state.logits.device
        positions, targets = self._positions.to(device), self._targets.to(device)
        available = (positions & ~state.masked).sum(-1) == 0  # every gold position still masked in the input
        score = answer_log_likelihood(state.logits, targets, positions)
        self._scores.append(torch.where(available, score, torch.full_like(score, float("nan"))).cpu())
        R = self.template.reasoning_length
        self._unmasked.append((~state.masked[:, :R]).float().mean(-1).cpu() if R else torch.ones(len(score)))

    def on_decode_end(self, state: DecodeState, output: DecodeOutput) -> None:
        B = state.canvas.shape[0]
        empty = torch.empty(0, B)
        output.extras[self.name] = {
            "score": torch.stack(self._scores) if self._scores else empty,
            "reasoning_unmasked": torch.stack(self._unmasked) if self._unmasked else empty,
        }


@torch.inference_mode()
def trace_answer_likelihood(
    lm: Any, config: DecodeConfig, sequences: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor,
    answers: Sequence[str] | Sequence[Sequence[int]],
) -> torch.Tensor:
    """``ll(r) = mean_i log p(a*_i | c, r)`` of finished traces (B,): their gold-answer positions of the
    infilling template masked again, one forward pass over ``[prompt | r | delimiter | masked answer]``
    (No Compute Left Behind, docs/methods.md "Infilling, early exit, posterior sampling"). ``sequences``
    (B, L) generation regions of a templated decode; ``answers`` gold answers, text or ids."""
    template = InfillTemplate.from_config(config, lm.tokenizer)
    gold = encode_answers(lm.tokenizer, answers)
    device = next(lm.parameters()).device
    sequences = sequences.to(device)
    B, L = sequences.shape
    targets, positions = (t.to(device) for t in template.answer_targets(gold))
    region = sequences.masked_fill(positions, lm.mask_token_id)
    canvas = torch.cat([prompt_ids.to(device), region], 1)
    attn = torch.cat([prompt_mask.to(device).long(), torch.ones(B, L, dtype=torch.long, device=device)], 1)
    logits = lm.logits(canvas, attn)[:, prompt_ids.shape[1] :].float()
    logits[..., lm.mask_token_id] = float("-inf")  # as in decoding: the mask token is never an answer
    return answer_log_likelihood(logits, targets, positions).cpu()


def trace_records(
    lm: Any, config: DecodeConfig, out: DecodeOutput, prompt_mask: torch.Tensor, answers: Sequence[str]
) -> list[dict[str, Any]]:
    """Per row of a posterior decode ``p(r | c, a*)``: the reasoning text, its answer log-likelihood (one
    forward pass with the given answer block masked again: the pass the decode itself never makes), its
    token count, whether the reasoning block ``ended`` (holds an end token, so the trace did not run out of
    budget) and whether it still ``has_mask``."""
    scores = trace_answer_likelihood(lm, config, out.sequences, out.prompt_ids, prompt_mask, answers)
    R = InfillTemplate.from_config(config, lm.tokenizer).reasoning_length
    ends, mask_id = {int(t) for t in lm.end_token_ids}, int(lm.mask_token_id)
    rows = []
    for b in range(len(answers)):
        block = [int(t) for t in out.sequences[b, :R].tolist()]
        reasoning = [t for t in block if t not in ends and t != mask_id]
        rows.append({"reasoning": lm.tokenizer.decode(reasoning, skip_special_tokens=True), "answer": answers[b],
                     "answer_ll": float(scores[b]), "reasoning_tokens": len(reasoning),
                     "ended": any(t in ends for t in block), "has_mask": mask_id in block})
    return rows
