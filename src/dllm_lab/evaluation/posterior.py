"""Posterior traces: reasoning sampled given the gold answer, p(r | c, a*), and each trace's answer
log-likelihood (No Compute Left Behind, arXiv 2510.19990; docs/methods.md "Infilling, early exit, posterior
sampling")."""

from __future__ import annotations

from typing import Any

import torch

from dllm_lab.decoding import DecodeConfig, DecodeOutput, InfillTemplate, answer_log_likelihood
from dllm_lab.decoding.infill import encode_answers
from dllm_lab.models.adapter import DiffusionLM


@torch.inference_mode()
def trace_records(
    lm: DiffusionLM, config: DecodeConfig, out: DecodeOutput, prompt_mask: torch.Tensor, answers: list[str]
) -> list[dict[str, Any]]:
    """Per row of a posterior decode: the reasoning text and its answer log-likelihood
    ``mean_i log p(a*_i | c, r)``, from one forward pass over ``[prompt | r | delimiter | masked answer]``
    (the pass the decode itself never makes: its answer block was given)."""
    template = InfillTemplate.from_config(config, lm.tokenizer)
    gold = encode_answers(lm.tokenizer, answers)
    device = next(lm.parameters()).device
    sequences = out.sequences.to(device)
    B, L = sequences.shape
    a0 = template.answer_start
    positions = torch.zeros(B, L, dtype=torch.bool, device=device)
    targets = torch.zeros(B, L, dtype=torch.long, device=device)
    for b, ids in enumerate(gold):
        positions[b, a0 : a0 + len(ids)] = True
        targets[b, a0 : a0 + len(ids)] = torch.tensor(ids, dtype=torch.long, device=device)
    region = sequences.masked_fill(positions, lm.mask_token_id)
    canvas = torch.cat([out.prompt_ids.to(device), region], 1)
    attn = torch.cat([prompt_mask.to(device), torch.ones(B, L, dtype=torch.long, device=device)], 1)
    logits = lm.logits(canvas, attn)[:, out.prompt_ids.shape[1] :].float()
    logits[..., lm.mask_token_id] = float("-inf")  # as in decoding: the mask token is never an answer
    scores = answer_log_likelihood(logits, targets, positions).cpu()
    drop = {lm.mask_token_id, *lm.end_token_ids}
    rows = []
    for b in range(B):
        reasoning = [int(t) for t in out.sequences[b, : template.reasoning_length].tolist() if int(t) not in drop]
        rows.append({"reasoning": lm.tokenizer.decode(reasoning, skip_special_tokens=True), "answer": answers[b],
                     "answer_ll": float(scores[b]), "reasoning_tokens": len(reasoning)})
    return rows
