"""The clipped GRPO policy loss with a k3 KL penalty (d1, CJ-GRPO; docs/methods.md "GRPO family")."""

from __future__ import annotations

import torch


def policy_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    ref_logp: torch.Tensor | None,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    eps: float = 0.5,
    beta: float = 0.04,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO loss of diffu-GRPO (d1, Zhao et al. 2025, Eq. 4) and CJ-GRPO (Yang et al. 2025).

    Per token: ``-min(rho A, clip(rho, 1-eps, 1+eps) A) + beta (exp(ref - logp) - (ref - logp) - 1)``,
    ``rho = exp(logp - old_logp)``; the KL term is the k3 estimator of KL(policy || reference).

    Shapes: ``logp``, ``old_logp``, ``ref_logp``, ``mask`` (B, L) for one-step estimators or (S, B, L) for
    trajectory ones; ``advantages`` (B,). ``ref_logp`` may be ``None`` when ``beta == 0``. Reduction: masked
    token mean within each (step, sample), then the mean over the steps with any masked token of that
    sample, then the mean over the B samples (d1's mean over completion tokens for (B, L); CJ-GRPO's token
    mean per step averaged over steps for (S, B, L)). A sample with an empty mask contributes 0 (it still
    counts in the batch mean). Unmasked entries are never read, so they may hold anything (even -inf).

    Returns the scalar loss and detached stats: ``kl`` (the k3 KL with the loss's reduction, so
    ``loss = policy + beta * kl``; 0 without ``ref_logp``), ``policy`` (the clipped surrogate term) and
    ``clip_ratio`` (share of masked tokens where the clipped term binds: ``A > 0, rho > 1+eps`` or
    ``A < 0, rho < 1-eps``).
    """
    if ref_logp is None and beta != 0:
        raise ValueError(f"beta={beta} needs ref_logp (the reference policy's log-probs); pass them or set beta=0")
    shapes = {"logp": logp.shape, "old_logp": old_logp.shape, "mask": mask.shape}
    if ref_logp is not None:
        shapes["ref_logp"] = ref_logp.shape
    if len(set(shapes.values())) > 1 or logp.dim() not in (2, 3):
        raise ValueError(f"logp, old_logp, ref_logp and mask must share one shape, (B, L) or (S, B, L); got {shapes}")
    squeeze = logp.dim() == 2
    if squeeze:  # (B, L) -> (1, B, L): a single "step"
        logp, old_logp, mask = logp[None], old_logp[None], mask[None]
        ref_logp = ref_logp[None] if ref_logp is not None else None
    if advantages.shape != (logp.shape[1],):
        raise ValueError(f"advantages must be (B,) = ({logp.shape[1]},), got {tuple(advantages.shape)}")
    mask = mask.bool()
    # zero the unmasked entries first: -inf or NaN there must not reach the loss or its gradient
    logp = logp.masked_fill(~mask, 0.0)
    old_logp = old_logp.detach().masked_fill(~mask, 0.0)
    adv = advantages.detach().to(logp.dtype)[None, :, None]  # (1, B, 1)

    rho = torch.exp(logp - old_logp)
    unclipped, clipped = rho * adv, rho.clamp(1 - eps, 1 + eps) * adv
    policy_tok = -torch.min(unclipped, clipped)  # (S, B, L)
    if ref_logp is not None:
        diff = ref_logp.detach().masked_fill(~mask, 0.0) - logp
        kl_tok = torch.exp(diff) - diff - 1
    else:
        kl_tok = torch.zeros_like(logp)

    counts = mask.sum(-1)  # (S, B)
    has_tokens = counts > 0
    steps_per_sample = has_tokens.sum(0).clamp(min=1)  # (B,)

    def reduce(tok: torch.Tensor) -> torch.Tensor:
        per_step = (tok * mask).sum(-1) / counts.clamp(min=1)  # (S, B); 0 for an empty step
        return ((per_step * has_tokens).sum(0) / steps_per_sample).mean()

    policy, kl = reduce(policy_tok), reduce(kl_tok)
    loss = policy + beta * kl if beta != 0 else policy
    binds = ((adv > 0) & (rho > 1 + eps)) | ((adv < 0) & (rho < 1 - eps))
    clip_ratio = (binds & mask).sum() / mask.sum().clamp(min=1)
    stats = {"kl": kl.detach(), "policy": policy.detach(), "clip_ratio": clip_ratio.detach().float()}
    return loss, stats
