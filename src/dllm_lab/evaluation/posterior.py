"""Posterior traces: reasoning sampled given the gold answer, p(r | c, a*), and each trace's answer
log-likelihood (No Compute Left Behind, arXiv 2510.19990; docs/methods.md "Infilling, early exit, posterior
sampling")."""

from __future__ import annotations

from typing import Any

import torch

from dllm_lab.decoding import DecodeConfig, DecodeOutput, InfillTemplate
from dllm_lab.decoding.infill import trace_answer_likelihood
from dllm_lab.models.adapter import DiffusionLM


def trace_records(
    lm: DiffusionLM, config: DecodeConfig, out: DecodeOutput, prompt_mask: torch.Tensor, answers: list[str]
) -> list[dict[str, Any]]:
    """Per row of a posterior decode: the reasoning text and its answer log-likelihood, from one forward pass
    with the (given) answer block masked again: the pass the decode itself never makes."""
    scores = trace_answer_likelihood(lm, config, out.sequences, out.prompt_ids, prompt_mask, answers)
    reasoning_length = InfillTemplate.from_config(config, lm.tokenizer).reasoning_length
    drop = {lm.mask_token_id, *lm.end_token_ids}
    rows = []
    for b in range(len(answers)):
        reasoning = [int(t) for t in out.sequences[b, :reasoning_length].tolist() if int(t) not in drop]
        rows.append({"reasoning": lm.tokenizer.decode(reasoning, skip_special_tokens=True), "answer": answers[b],
                     "answer_ll": float(scores[b]), "reasoning_tokens": len(reasoning)})
    return rows
