"""Per-token log-probability estimators of a completion under a masked diffusion LM (docs/methods.md "GRPO family").

A masked diffusion LM has no tractable sequence likelihood; GRPO needs a per-token surrogate:

- ``one_step`` (diffu-GRPO, d1: Zhao et al. 2025, arXiv 2504.12216): one forward pass with the prompt
  randomly masked (rate ``p_mask_prompt``) and the completion fully masked; the mask is drawn from a seed
  so that old, reference and current policy see the same input within an inner iteration.
- ``full_mask``: the same with a clean prompt (a one-step baseline).
- ``trajectory`` (CJ-GRPO, "Taming MDLMs", Yang et al. 2025, arXiv 2509.23924): replay the recorded
  decoding, one forward pass per step; at step ``s`` the tokens committed at ``s`` are scored given the
  canvas before ``s``. Only token ids of the trajectory are stored, never logits.

Every estimator feeds ``[prompt | completion input]`` with the prompt's attention mask followed by ones,
and computes ``log_softmax`` in float32 only at the positions it scores.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from dllm_lab.models.adapter import DiffusionLM


def completion_mask(completion_ids: torch.Tensor, eos_token_ids: Sequence[int]) -> torch.Tensor:
    """(B, L) bool: completion tokens up to and including the first EOS (every token when there is none).

    ``eos_token_ids``: the ids that end a completion (pass EOT ids too for families that use them).
    """
    eos = torch.as_tensor(list(eos_token_ids), dtype=completion_ids.dtype, device=completion_ids.device)
    is_eos = torch.isin(completion_ids, eos).long()  # (B, L)
    return (is_eos.cumsum(-1) - is_eos) == 0  # no EOS strictly before this position


def _model_inputs(
    prompt_ids: torch.Tensor, prompt_attention_mask: torch.Tensor, completion_input: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Canvas (B, P+L) and attention mask (B, P+L): the prompt's mask, then ones over the completion."""
    if prompt_ids.shape != prompt_attention_mask.shape or prompt_ids.shape[0] != completion_input.shape[0]:
        raise ValueError(
            f"prompt_ids {tuple(prompt_ids.shape)}, prompt_attention_mask {tuple(prompt_attention_mask.shape)} and "
            f"completion_ids {tuple(completion_input.shape)} must be (B, P), (B, P) and (B, L)"
        )
    ones = torch.ones_like(completion_input, dtype=prompt_attention_mask.dtype)
    return torch.cat([prompt_ids, completion_input], 1), torch.cat([prompt_attention_mask, ones], 1)


def _target_logps(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """``log_softmax(logits)[target]`` in float32: ``logits`` (..., V), ``targets`` (...) -> (...)."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)


def one_step_logps(
    lm: DiffusionLM,
    prompt_ids: torch.Tensor,
    prompt_attention_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    seed: int,
    p_mask_prompt: float = 0.15,
) -> torch.Tensor:
    """diffu-GRPO's one-step per-token log-probabilities (d1, Zhao et al. 2025, Sec. 3.2).

    ``prompt_ids``, ``prompt_attention_mask`` (B, P) left-padded; ``completion_ids`` (B, L). Each real
    prompt token (attention mask 1) is replaced by the mask token with probability ``p_mask_prompt``,
    drawn on the CPU from ``torch.Generator().manual_seed(seed)`` (the same seed gives the same mask on any
    device, for old, reference and current policy); the completion is fully masked. Returns (B, L) float32,
    the log-probability of each completion token.
    """
    if not 0.0 <= p_mask_prompt <= 1.0:
        raise ValueError(f"p_mask_prompt={p_mask_prompt} must be a probability in [0, 1]")
    gen = torch.Generator().manual_seed(int(seed))
    draw = torch.rand(prompt_ids.shape, generator=gen).to(prompt_ids.device)  # (B, P)
    masked = (draw < p_mask_prompt) & prompt_attention_mask.bool()
    prompt = prompt_ids.masked_fill(masked, lm.mask_token_id)
    return _fully_masked_logps(lm, prompt, prompt_attention_mask, completion_ids)


def full_mask_logps(
    lm: DiffusionLM, prompt_ids: torch.Tensor, prompt_attention_mask: torch.Tensor, completion_ids: torch.Tensor
) -> torch.Tensor:
    """One-step log-probabilities with a clean prompt and the completion fully masked. (B, L) float32."""
    return _fully_masked_logps(lm, prompt_ids, prompt_attention_mask, completion_ids)


def _fully_masked_logps(
    lm: DiffusionLM, prompt_ids: torch.Tensor, prompt_attention_mask: torch.Tensor, completion_ids: torch.Tensor
) -> torch.Tensor:
    P = prompt_ids.shape[1]
    canvas, attn = _model_inputs(prompt_ids, prompt_attention_mask, torch.full_like(completion_ids, lm.mask_token_id))
    logits = lm.logits(canvas, attn)[:, P:]  # (B, L, V)
    return _target_logps(logits, completion_ids)


def commit_steps(committed: torch.Tensor) -> torch.Tensor:
    """The step at which each position was committed: (S, B, L) bool -> (B, L) long, -1 if never.

    ``committed`` is a :class:`~dllm_lab.decoding.callbacks.TrajectoryRecorder`'s record; -1 marks positions
    no step committed (pre-filled template tokens). A position is committed at most once; the first step
    counts.
    """
    if committed.dim() != 3:
        raise ValueError(f"committed must be (S, B, L) bool, got shape {tuple(committed.shape)}")
    if committed.shape[0] == 0:
        return torch.full(committed.shape[1:], -1, dtype=torch.long, device=committed.device)
    first = committed.to(torch.uint8).argmax(dim=0)  # first True along the steps
    return torch.where(committed.any(dim=0), first, torch.full_like(first, -1))


def trajectory_logps(
    lm: DiffusionLM,
    prompt_ids: torch.Tensor,
    prompt_attention_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    commit_step: torch.Tensor,
    num_steps: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CJ-GRPO's per-step log-probabilities over the recorded transitions (Yang et al. 2025, Sec. 4).

    ``prompt_ids``, ``prompt_attention_mask`` (B, P) left-padded; ``completion_ids`` (B, L) the final
    completion; ``commit_step`` (B, L) from :func:`commit_steps`; ``num_steps`` ``S``. At step ``s`` the
    input is the completion with the positions committed before ``s`` (and the never-committed ``-1``
    ones) revealed and every other position masked, i.e. the canvas ``x_{s-1}`` the decoder saw; the
    targets are the tokens committed at ``s``, at those positions only. One forward pass per step (none
    for a step in which no row committed anything). The graph of every step is kept when gradients are
    on; a caller short of memory can call this per slice of steps.

    Returns ``logp`` (S, B, L) float32 (0 where not scored) and ``mask`` (S, B, L) bool (``commit_step == s``).
    """
    if commit_step.shape != completion_ids.shape:
        raise ValueError(
            f"commit_step {tuple(commit_step.shape)} must have the shape of completion_ids "
            f"{tuple(completion_ids.shape)}; build it with commit_steps(trajectory['committed'])"
        )
    commit_step = commit_step.to(completion_ids.device)
    if commit_step.numel() and int(commit_step.max()) >= num_steps:
        raise ValueError(
            f"commit_step has step {int(commit_step.max())} but num_steps={num_steps}; pass the number of recorded "
            "steps, trajectory['committed'].shape[0]"
        )
    P = prompt_ids.shape[1]
    steps = torch.arange(num_steps, device=completion_ids.device)
    mask = commit_step[None] == steps[:, None, None]  # (S, B, L)
    rows = []
    for s in range(num_steps):
        if not bool(mask[s].any()):
            rows.append(torch.zeros(completion_ids.shape, dtype=torch.float32, device=completion_ids.device))
            continue
        revealed = commit_step < s  # -1 (never committed) counts as revealed from the start
        x_prev = torch.where(revealed, completion_ids, torch.full_like(completion_ids, lm.mask_token_id))
        canvas, attn = _model_inputs(prompt_ids, prompt_attention_mask, x_prev)
        logits = lm.logits(canvas, attn)[:, P:]  # (B, L, V)
        b, i = mask[s].nonzero(as_tuple=True)
        scored = _target_logps(logits[b, i], completion_ids[b, i])  # (K,): only this step's committed tokens
        row = torch.zeros(completion_ids.shape, dtype=scored.dtype, device=scored.device)
        rows.append(row.index_put((b, i), scored))
    if not rows:
        empty = torch.zeros((0, *completion_ids.shape), dtype=torch.float32, device=completion_ids.device)
        return empty, mask
    return torch.stack(rows), mask
