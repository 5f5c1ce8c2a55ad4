"""Collators: masked-diffusion SFT noising (LLaDA, docs/methods.md "SFT loss") and prompt batches."""

from __future__ import annotations

import random
import zlib
from dataclasses import dataclass
from typing import Any

import torch

from dllm_lab.decoding.infill import InfillTemplate
from dllm_lab.errors import ConfigError
from dllm_lab.models.chat import left_pad


def sample_mask_prob(t: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """``p = (1 - eps) * t + eps``: the masking probability of a noise level ``t ~ U(0, 1)``."""
    return (1 - eps) * t + eps


@dataclass
class SFTCollator:
    """Batch ``{"prompt_ids", "response_ids", "key"}`` items into noised SFT inputs.

    Each sequence is ``[prompt | response | EOS padding]``, right-padded with EOS up to the batch length
    (the padding counts as response, as in LLaDA SFT, which teaches the model to fill the rest of the
    canvas with EOS). Every response token, padding included, is masked with probability
    ``p = (1 - eps) t + eps``, ``t ~ U(0, 1)`` per sequence; the prompt never is. Noise is seeded by each
    item's ``key`` so a batch is reproducible regardless of worker count or resume point.

    Block noise (``block_noise_prob > 0``, off by default): that fraction of sequences is noised the way
    semi-autoregressive decoding sees its canvas. A block start ``c`` is drawn uniformly from
    ``0..len(response) - 1``; response tokens before ``c`` stay clean, the ``block_noise_length`` tokens from
    ``c`` are masked with probability ``p``, and every token after the block is masked. Each masked token
    keeps the weight ``1 / p_i`` of its own masking probability (``p`` in the block, 1 after it), so the
    loss stays the section 9 form with a per-token ``p``. This mirrors block-diffusion training (BD3-LM,
    Arriola et al. 2025): under uniform noise a reasoning result is almost always predictable by copying
    it from a later line, and a suffix that is still all masks, as in semi-AR decoding, is rare.
    With ``block_cut_token_id`` set (the id of ``=``), the block starts right after a randomly chosen
    occurrence of that token in the response instead (uniformly, as before, when there is none): the
    block then opens on a reasoning line's result, whose operands are clean and whose later copies are
    masked, so it can only be computed, in the context the task's decoding will see.

    An item may carry ``response_fixed`` (one bool per response token): the tokens that decoding pre-fills
    (the delimiter, closing and EOS tail of the reasoning-as-infilling template, :class:`InfillLayout`).
    They, and the batch padding after them, are never masked and never a target.

    Returns (``B`` sequences, ``N`` tokens): ``input_ids`` (B, N) noised; ``labels`` (B, N) clean;
    ``loss_mask`` (B, N) bool, masked response tokens; ``p_mask`` (B, N), each token's masking
    probability (1 outside the response); ``response_lengths`` (B,).
    """

    mask_token_id: int
    pad_token_id: int
    eps: float = 1e-3
    min_response_length: int = 0  # pad every response region to at least this many tokens
    long_response_length: int = 0  # with probability long_response_prob, pad to this instead
    long_response_prob: float = 0.0
    block_noise_prob: float = 0.0
    block_noise_length: int = 16
    block_cut_token_id: int | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.block_noise_prob <= 1.0:
            raise ValueError(f"block_noise_prob={self.block_noise_prob} must be a probability in [0, 1]")
        if self.block_noise_length < 1:
            raise ValueError(f"block_noise_length={self.block_noise_length} must be at least 1")

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        rng = random.Random(f"{self.seed}-{items[0]['key']}")
        resp_len = max(len(it["response_ids"]) for it in items)
        target = self.min_response_length
        if self.long_response_length and rng.random() < self.long_response_prob:
            target = self.long_response_length
        resp_len = max(resp_len, target)
        total = max(len(it["prompt_ids"]) for it in items) + resp_len
        batch = len(items)
        labels = torch.full((batch, total), self.pad_token_id, dtype=torch.long)
        is_response = torch.zeros(batch, total, dtype=torch.bool)
        p_mask = torch.ones(batch, total)
        noise = torch.empty(batch, total)
        for b, it in enumerate(items):
            p, r = it["prompt_ids"], it["response_ids"]
            labels[b, : len(p)] = torch.as_tensor(p)
            labels[b, len(p) : len(p) + len(r)] = torch.as_tensor(r)
            is_response[b, len(p) :] = True
            if "response_fixed" in it:
                is_response[b, len(p) : len(p) + len(r)] = ~torch.as_tensor(it["response_fixed"], dtype=torch.bool)
                is_response[b, len(p) + len(r) :] = False
            gen = torch.Generator().manual_seed(zlib.crc32(f"{self.seed}-{it['key']}".encode()))
            p_seq = sample_mask_prob(torch.rand((), generator=gen), self.eps)
            noise[b] = torch.rand(total, generator=gen)
            p_mask[b, len(p) :] = p_seq
            if self.block_noise_prob and torch.rand((), generator=gen) < self.block_noise_prob:
                cuts = [i + 1 for i, tok in enumerate(r[:-1]) if tok == self.block_cut_token_id]
                offsets = cuts or range(max(len(r), 1))
                start = len(p) + offsets[int(torch.randint(len(offsets), (), generator=gen))]
                end = start + self.block_noise_length
                p_mask[b, len(p) : start] = 0.0  # clean prefix: already decoded
                p_mask[b, end:] = 1.0  # all masks: not decoded yet
        loss_mask = is_response & (noise < p_mask)
        input_ids = labels.masked_fill(loss_mask, self.mask_token_id)
        return {
            "input_ids": input_ids,
            "labels": labels,
            "loss_mask": loss_mask,
            "p_mask": p_mask,
            "response_lengths": is_response.sum(1),
        }


@dataclass(frozen=True)
class InfillLayout:
    """SFT in the reasoning-as-infilling layout (No Compute Left Behind; docs/methods.md): a share ``prob``
    of the reference completions is laid out as the decoding template of a generation length drawn from
    those in ``templates`` that fit (:meth:`InfillTemplate.training_row`), so that a model learns to
    reason into a fixed budget, with the answer block after it, next to the plain layout. A completion
    that fits no template keeps the plain layout."""

    templates: tuple[InfillTemplate, ...]
    prob: float
    delimiter: str
    closing: str

    def __post_init__(self) -> None:
        if not 0.0 <= self.prob <= 1.0:
            raise ConfigError(f"data.infill_prob={self.prob} must be a probability in [0, 1]")

    @classmethod
    def build(cls, tokenizer: Any, prob: float, gen_lengths: list[int], answer_length: int, delimiter: str,
              closing: str) -> InfillLayout:
        templates = tuple(InfillTemplate.from_text(tokenizer, n, delimiter, answer_length, closing)
                          for n in sorted(gen_lengths))
        return cls(templates, prob, delimiter, closing)

    def response(self, completion: str, tokenize: Any, eos_id: int, rng: random.Random,
                 ) -> tuple[list[int], list[bool]] | None:
        """``(ids, fixed)`` of ``completion`` in a template drawn with ``rng``, or ``None`` (plain layout)."""
        if rng.random() >= self.prob:
            return None
        head, sep, rest = completion.rpartition(self.delimiter)
        answer, sep2, tail = rest.rpartition(self.closing)
        if not sep or not sep2 or tail.strip():
            raise ConfigError(
                f"data.infill_delimiter={self.delimiter!r} / data.infill_closing={self.closing!r} do not occur in "
                f"the reference completion {completion[-80:]!r}; set them to the task's answer format"
            )
        reasoning, answer_ids = tokenize(head), tokenize(answer)
        rows = [t.training_row(reasoning, answer_ids, eos_id) for t in self.templates]
        fitting = [row for row in rows if row is not None]
        return rng.choice(fitting) if fitting else None


@dataclass
class PromptCollator:
    """Left-pad prompt ids for decoding; pass the examples through untouched.

    Returns ``prompt_ids`` (B, P) left-padded with ``pad_token_id``, ``attention_mask`` (B, P), and the
    list fields ``examples``, ``tasks`` and ``prompts`` (text).
    """

    pad_token_id: int

    def __call__(self, items: list[dict[str, Any]]) -> dict[str, Any]:
        ids, mask = left_pad([it["prompt_ids"] for it in items], self.pad_token_id)
        return {
            "prompt_ids": ids,
            "attention_mask": mask,
            "examples": [it["example"] for it in items],
            "tasks": [it["task"] for it in items],
            "prompts": [it["prompt"] for it in items],
        }

