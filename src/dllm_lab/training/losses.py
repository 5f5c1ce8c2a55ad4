"""Training losses as pure tensor functions."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def mdlm_loss(
    logits: torch.Tensor,
    labels: torch.Tensor,
    loss_mask: torch.Tensor,
    p_mask: torch.Tensor,
    response_lengths: torch.Tensor,
) -> torch.Tensor:
    """Masked diffusion SFT loss (LLaDA, Nie et al. 2025, Eq. 5; docs/methods.md "SFT loss").

    ``sum_{masked i} CE_i / p`` divided by the response length (EOS padding included), averaged over
    the batch. Shapes: ``logits`` (B, N, V); ``labels``, ``loss_mask`` (B, N); ``p_mask`` (B,), one masking
    probability per sequence, or (B, N), one per token (block noise); ``response_lengths`` (B,). Only
    masked positions enter the cross-entropy, so the ``(B, N, V)`` softmax is never materialised for clean
    tokens.
    """
    rows, cols = loss_mask.nonzero(as_tuple=True)
    if rows.numel() == 0:
        return logits.sum() * 0.0  # keeps the graph (DDP needs every parameter used)
    ce = F.cross_entropy(logits[rows, cols].float(), labels[rows, cols], reduction="none")  # (M,)
    per_token = ce / (p_mask[rows] if p_mask.dim() == 1 else p_mask[rows, cols])
    per_seq = torch.zeros(labels.shape[0], device=logits.device).index_add_(0, rows, per_token)
    return (per_seq / response_lengths.clamp(min=1)).mean()
