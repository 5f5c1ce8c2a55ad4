"""Candidate sampling and position scores of the denoising step (docs/methods.md "The denoising step").

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


def sample_tokens(
    logits: torch.Tensor, temperature: float, generator: torch.Generator | None = None,
    where: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gumbel-max sampling ``argmax(logits / T + g)`` with float64 noise (LLaDA: low-precision Gumbel
    noise hurts quality); ``T = 0`` is plain argmax. ``logits`` (..., V) -> ids (...).

    ``where`` (...) bool: only those positions are sampled; the others get id 0, for a caller that
    discards them. The noise is still drawn for every position, so the sampled ids, and the generator's
    state afterwards, are the same as without ``where``."""
    if temperature == 0:
        return logits.argmax(-1)
    u = torch.rand(logits.shape, dtype=torch.float64, device=logits.device, generator=generator)
    if where is None:
        gumbel = -torch.log(-torch.log(u.clamp_min(1e-300)))
        return (logits.to(torch.float64) / temperature + gumbel).argmax(-1)
    out = torch.zeros(logits.shape[:-1], dtype=torch.long, device=logits.device)
    gumbel = -torch.log(-torch.log(u[where].clamp_min(1e-300)))  # (n, V): the positions asked for
    out[where] = (logits[where].to(torch.float64) / temperature + gumbel).argmax(-1)
    return out


def position_scores(
    logits: torch.Tensor, x0: torch.Tensor, scorer: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Score of committing each position (higher first). ``logits`` (B, L, V), ``x0`` (B, L) -> (B, L).

    - ``low_confidence`` (LLaDA; Dream ``maskgit_plus``): ``p_i(x0_i)``
    - ``margin`` (Dream ``topk_margin``): top-1 minus top-2 probability
    - ``entropy`` (Dream ``entropy``): ``-H_i``
    - ``random``: ``U(0, 1)``
    """
    logp = None if scorer == "random" else log_probs(logits)
    return scores_from_log_probs(logp, x0, scorer, generator)


def log_probs(logits: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` in float32 at least, with ``-inf`` (filtered tokens) floored to the dtype's
    minimum so that ``p log p`` is 0 rather than NaN. ``logits`` (..., V) -> (..., V)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    floor = torch.finfo(logp.dtype).min
    return logp.clamp_min(floor) if logp.requires_grad else logp.clamp_min_(floor)  # in place: no (B, L, V) copy


def scores_from_log_probs(
    logp: torch.Tensor | None, x0: torch.Tensor, scorer: str, generator: torch.Generator | None = None
) -> torch.Tensor:
    """:func:`position_scores` from already computed log-probabilities ``logp`` (B, L, V), so that the
    loop computes the softmax once per step; ``logp`` may be ``None`` for ``random``."""
    if scorer == "random":
        return torch.rand(x0.shape, device=x0.device, generator=generator, dtype=torch.float32)
    assert logp is not None
    if scorer == "low_confidence":
        return logp.gather(-1, x0.unsqueeze(-1)).squeeze(-1).exp()
    if scorer == "margin":
        top2 = logp.topk(2, dim=-1).values.exp()
        return top2[..., 0] - top2[..., 1]
    if scorer == "entropy":
        return -entropy_from_log_probs(logp)
    raise ValueError(f"unknown scorer {scorer!r}")


def entropy_from_log_probs(logp: torch.Tensor) -> torch.Tensor:
    """``H = -sum_v p_v log p_v`` in nats from :func:`log_probs` output. (..., V) -> (...)."""
    return -(logp.exp() * logp).sum(-1)


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Per-position entropy in nats. ``logits`` (..., V) -> (...)."""
    return entropy_from_log_probs(log_probs(logits))


# -- score modifiers ----------------------------------------------------------------------------------------
def eoser_gamma(step: int, total_steps: int, g_min: float, g_max: float, ascending: bool = False) -> float:
    """EOSER factor ``gamma_s`` at global step ``s`` of ``S`` (Yang et al. 2025, "Taming MDLMs ... Fewer
    Decoding Steps", EOS early rejection; docs/methods.md "EOSER").

    - uniform steps: ``g_min + (g_max - g_min) * s / (S - 1)`` (``g_max`` when ``S = 1``);
    - ascending step size: ``g_min + (g_max - g_min) * (2^(s+1) - 1) / 2^S`` (the share of tokens
      committed after step ``s``).
    ``s`` is the step of the whole decode, not of the block **[ours]**, so gamma reaches ``g_max``.
    """
    if not 0 <= step < total_steps:
        raise ValueError(f"step {step} outside 0..{total_steps - 1}")
    if ascending:
        frac = (2 ** (step + 1) - 1) / 2**total_steps
    else:
        frac = step / (total_steps - 1) if total_steps > 1 else 1.0
    return g_min + (g_max - g_min) * frac


def apply_eoser(scores: torch.Tensor, is_eos: torch.Tensor, gamma: float) -> torch.Tensor:
    """Scale the score of EOS candidates by ``gamma`` (Taming MDLMs, EOSER). ``scores``, ``is_eos`` (B, L).

    Confidences and margins are >= 0 and are multiplied; negative scores (``entropy``: ``-H``) are
    divided instead, so that ``gamma < 1`` always makes EOS less preferred (``H -> H / gamma``)."""
    scaled = torch.where(scores >= 0, scores * gamma, scores / gamma)
    return torch.where(is_eos, scaled, scores)
