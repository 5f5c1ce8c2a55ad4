"""Candidate sampling and position scores of the denoising step (ALGORITHMS.md section 1).

All functions are pure: logits in, tensors out, shapes in the docstrings.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Top-k then nucleus (top-p) filtering: excluded entries become ``-inf``. ``logits`` (..., V)."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop_sorted = cum - sorted_logits.softmax(-1) > top_p  # keep the token that crosses top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_tokens(logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Gumbel-max sampling ``argmax(logits / T + g)`` with float64 noise (LLaDA: low-precision Gumbel
    noise hurts quality); ``T = 0`` is plain argmax. ``logits`` (..., V) -> ids (...)."""
    if temperature == 0:
        return logits.argmax(-1)
    logits64 = logits.to(torch.float64)
    u = torch.rand(logits64.shape, dtype=torch.float64, device=logits.device, generator=generator)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
    return (logits64 / temperature + gumbel).argmax(-1)


def position_scores(
    logits: torch.Tensor, x0: torch.Tensor, scorer: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Score of committing each position (higher first). ``logits`` (B, L, V), ``x0`` (B, L) -> (B, L).

    - ``low_confidence`` (LLaDA; Dream ``maskgit_plus``): ``p_i(x0_i)``
    - ``margin`` (Dream ``topk_margin``): top-1 minus top-2 probability
    - ``entropy`` (Dream ``entropy``): ``-H_i``
    - ``random``: ``U(0, 1)``
    """
    if scorer == "random":
        return torch.rand(x0.shape, device=x0.device, generator=generator, dtype=torch.float32)
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, L, V) float32 at least
    if scorer == "low_confidence":
        return logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1).exp()
    if scorer == "margin":
        top2 = logp.topk(2, dim=-1).values.exp()
        return top2[..., 0] - top2[..., 1]
    if scorer == "entropy":
        return (logp.exp() * logp).sum(-1)  # = -H
    raise ValueError(f"unknown scorer {scorer!r}")


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy in nats. ``logits`` (..., V) -> (...)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(logp.exp() * logp).sum(-1)
