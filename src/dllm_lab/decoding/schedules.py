"""How many tokens each step commits (ALGORITHMS.md section 2)."""

from __future__ import annotations

import torch


def linear_counts(num_masked: torch.Tensor, steps: int) -> torch.Tensor:
    """LLaDA's even split: ``k_j = n // q`` plus one for the first ``n % q`` steps.

    ``num_masked`` (B,) masked tokens per row in the block; returns (B, steps) counts summing to it.
    (Nie et al. 2025, LLaDA, Appendix B: ``get_num_transfer_tokens``.)
    """
    base = num_masked // steps  # (B,)
    remainder = num_masked % steps  # (B,)
    step_idx = torch.arange(steps, device=num_masked.device)  # (S,)
    return base[:, None] + (step_idx[None, :] < remainder[:, None]).long()
