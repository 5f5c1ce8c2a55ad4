"""Which eligible positions a step commits (docs/methods.md "The denoising step" / "Adaptive decoders").

Pure tensor functions on one step's scores: ``scores`` / ``entropy`` (B, L) float and ``eligible``
(B, L) bool (still masked, inside the current block, row not finished) -> ``commit`` (B, L) bool.
:func:`select_topk` commits a schedule's count; the adaptive rules decide the count from the data and
always commit at least one position in every row that has an eligible one, so a block always ends.
"""

from __future__ import annotations

import torch

NEG_INF = float("-inf")
# Eligible positions whose score was suppressed (e.g. EOS with confidence_eos_eot_inf, NaN logits)
# still rank above ineligible ones: they get this finite floor instead of -inf.
SUPPRESSED = -1e9


def rank_keys(scores: torch.Tensor, eligible: torch.Tensor) -> torch.Tensor:
    """Scores (B, L) made safe to rank: ineligible ``-inf``, suppressed / NaN eligible ``SUPPRESSED``."""
    safe = scores.float().nan_to_num(nan=SUPPRESSED, neginf=SUPPRESSED).clamp_min(SUPPRESSED)
    return torch.where(eligible, safe, NEG_INF)


def _best(keys: torch.Tensor) -> torch.Tensor:
    """One-hot (B, L) of each row's highest key; all False in rows with nothing eligible."""
    best = torch.zeros(keys.shape, dtype=torch.bool, device=keys.device)
    best.scatter_(1, keys.argmax(1, keepdim=True), True)
    return best & (keys > NEG_INF)


def select_topk(scores: torch.Tensor, eligible: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """The ``k[b]`` highest-scoring eligible positions of each row (LLaDA low-confidence remasking,
    Nie et al. 2025, Algorithm 5). ``k`` (B,) long; fewer are taken where fewer are eligible."""
    keys = rank_keys(scores, eligible)  # (B, L)
    commit = torch.zeros_like(eligible)
    kmax = min(int(k.max()), keys.shape[1]) if k.numel() else 0
    if kmax <= 0:
        return commit
    top = keys.topk(kmax, dim=-1)
    take = torch.arange(kmax, device=k.device)[None, :] < k[:, None]  # (B, kmax)
    take &= top.values > NEG_INF
    return commit.scatter(1, top.indices, take)


def threshold_select(scores: torch.Tensor, eligible: torch.Tensor, threshold: float) -> torch.Tensor:
    """Confidence-threshold parallel decoding (Wu et al. 2025, Fast-dLLM, Sec. 3.3): every eligible
    position with ``c >= threshold``, and always the best one."""
    keys = rank_keys(scores, eligible)
    return (keys >= threshold) | _best(keys)


def factor_select(scores: torch.Tensor, eligible: torch.Tensor, factor: float) -> torch.Tensor:
    """Fast-dLLM's factor rule (Wu et al. 2025, Fast-dLLM, Theorem 1 / ``factor`` variant): sort the
    eligible confidences descending and keep rank ``n`` (1-based) while ``c_(n) >= 1 - factor/(n+1)``;
    rank 1 is always kept."""
    keys = rank_keys(scores, eligible)
    ordered, order = keys.sort(dim=1, descending=True)  # (B, L)
    rank = torch.arange(1, keys.shape[1] + 1, device=keys.device, dtype=keys.dtype)  # (L,)
    ok = ordered >= 1 - factor / (rank + 1)
    ok[:, 0] = True
    ok &= ordered > NEG_INF
    keep = ok.long().cumprod(1).bool()  # stop at the first rank that fails
    return torch.zeros_like(eligible).scatter(1, order, keep)


def med_select(entropy: torch.Tensor, eligible: torch.Tensor, lam: float) -> torch.Tensor:
    """MED, multi-token entropy decoding (No Compute Left Behind, 2025, arXiv 2510.19990) [our
    reading]: ``argmin H`` plus every other eligible ``j`` with ``H_j < lam`` (nats). The joint's KL
    from the product of marginals is then at most ``(|S| - 1) * lam``."""
    keys = rank_keys(-entropy, eligible)  # = -H, suppressed positions look maximally uncertain
    return (eligible & (-keys < lam)) | _best(keys)


def ar_med_select(entropy: torch.Tensor, eligible: torch.Tensor, lam: float) -> torch.Tensor:
    """AR-MED (No Compute Left Behind, 2025) [our reading]: the leftmost eligible position, extended to
    the right over consecutive eligible positions while ``H_j < lam``; stops at the first that fails."""
    B, L = eligible.shape
    pos = torch.arange(L, device=eligible.device)[None, :]  # (1, L)
    first = torch.where(eligible, pos, L).amin(1, keepdim=True)  # (B, 1), L when none
    calm = eligible & (-rank_keys(-entropy, eligible) < lam)
    run = (calm | (pos <= first)).long().cumprod(1).bool()  # True up to the first failure after `first`
    return run & (pos >= first) & eligible.any(1, keepdim=True)


ADAPTIVE = {"threshold": threshold_select, "factor": factor_select, "med": med_select, "ar_med": ar_med_select}


def adaptive_select(
    rule: str, scores: torch.Tensor, eligible: torch.Tensor, threshold: float, factor: float, med_lambda: float
) -> torch.Tensor:
    """Dispatch to an adaptive rule. ``scores`` are the scorer's (higher first; ``-H`` for MED rules)."""
    if rule == "threshold":
        return threshold_select(scores, eligible, threshold)
    if rule == "factor":
        return factor_select(scores, eligible, factor)
    if rule == "med":
        return med_select(-scores, eligible, med_lambda)
    if rule == "ar_med":
        return ar_med_select(-scores, eligible, med_lambda)
    raise ValueError(f"unknown adaptive rule {rule!r}; choose one of {sorted(ADAPTIVE)}")
