"""Group-relative advantages of GRPO (d1 / diffu-GRPO, Zhao et al. 2025; docs/methods.md "GRPO family")."""

from __future__ import annotations

from collections.abc import Sequence

import torch

ADVANTAGE_SCALES = ("none", "group", "batch")


def group_advantages(
    rewards: torch.Tensor | Sequence[float], group_size: int, scale: str = "none", eps: float = 1e-4
) -> torch.Tensor:
    """``A = r - mean_group(r)``, optionally divided by a standard deviation (+ ``eps``).

    ``rewards`` (N,) with ``N = prompts * group_size``; consecutive rows are the generations of one prompt.
    ``scale``: ``none`` (d1's default), ``group`` (the group's std) or ``batch`` (the std over all N).
    Stds are sample stds (Bessel-corrected, as ``torch.std`` and TRL). A group whose rewards are all equal
    gets exactly zero advantage (it carries no learning signal), under every scale. Returns float (N,).
    """
    if scale not in ADVANTAGE_SCALES:
        raise ValueError(f"unknown advantage scale {scale!r}; choose one of {ADVANTAGE_SCALES}")
    if group_size < 2:
        raise ValueError(
            f"num_generations must be >= 2 (got {group_size}): a group-relative advantage needs at least two "
            "completions per prompt"
        )
    r = torch.as_tensor(rewards)
    r = r.float() if not r.is_floating_point() else r
    if r.dim() != 1 or r.numel() % group_size:
        raise ValueError(
            f"rewards of shape {tuple(r.shape)} cannot be split into groups of {group_size}; pass one reward per "
            "completion, N = prompts * num_generations, each prompt's generations consecutive"
        )
    groups = r.view(-1, group_size)  # (prompts, G)
    adv = groups - groups.mean(dim=1, keepdim=True)
    if scale == "group":
        adv = adv / (groups.std(dim=1, keepdim=True) + eps)
    elif scale == "batch":
        adv = adv / (r.std() + eps)
    constant = groups.amax(dim=1, keepdim=True) == groups.amin(dim=1, keepdim=True)  # (prompts, 1)
    return adv.masked_fill(constant, 0.0).reshape(-1)
