"""The batched denoising loop shared by every decoder (ALGORITHMS.md sections 1-2).

One function, :func:`decode`, runs ``[prompt | L masks]`` canvases to completion: each step predicts
every masked position, scores the eligible ones and commits the best ``k_s``. Committed tokens never
change. Everything per step is a batched tensor operation; there is no per-sample Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from dllm_lab.config import ConfigError
from dllm_lab.data.collate import left_pad
from dllm_lab.decoding.callbacks import DecodeCallback, DecodeState
from dllm_lab.decoding.config import DecodeConfig
from dllm_lab.decoding.schedules import linear_counts
from dllm_lab.decoding.scorers import filter_logits, position_scores, sample_tokens
from dllm_lab.models.adapter import DiffusionLM

NEG_INF = float("-inf")
# Eligible positions whose score was suppressed (e.g. EOS with confidence_eos_eot_inf) still rank
# above ineligible ones: they get this finite floor instead of -inf.
SUPPRESSED = -1e9


@dataclass
class DecodeOutput:
    """``sequences`` (B, L) generated ids; ``texts`` decoded up to the first EOS; ``nfe`` forward
    passes; ``prompt_ids`` (B, P) left-padded prompts; ``extras`` what callbacks gathered."""

    sequences: torch.Tensor
    texts: list[str]
    nfe: int
    prompt_ids: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)


def prepare_prompts(
    model: DiffusionLM,
    prompts: Sequence[str] | Sequence[Sequence[int]] | torch.Tensor,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt ids (B, P) left-padded and their attention mask (B, P), from user messages (the chat
    template is applied), token id lists, or an already padded tensor."""
    if isinstance(prompts, torch.Tensor):
        ids = prompts.long()
        mask = attention_mask if attention_mask is not None else torch.ones_like(ids)
        return ids, mask.long()
    if prompts and isinstance(prompts[0], str):
        prompts = [model.encode_prompt(p) for p in prompts]  # type: ignore[arg-type]
    return left_pad([list(p) for p in prompts], model.pad_token_id)  # type: ignore[arg-type]


def _model_logits(model: DiffusionLM, canvas: torch.Tensor, attn: torch.Tensor, cfg: DecodeConfig, P: int):
    """Logits of the generation region (B, L, V) and the number of forward passes used."""
    if cfg.cfg_scale <= 0:
        return model.logits(canvas, attn)[:, P:], 1
    # Classifier-free guidance: the unconditional pass sees the prompt fully masked.
    uncond = canvas.clone()
    uncond[:, :P] = torch.where(attn[:, :P].bool(), model.mask_token_id, canvas[:, :P])
    both = model.logits(torch.cat([canvas, uncond]), torch.cat([attn, attn]))[:, P:]
    cond, unc = both.chunk(2)
    return unc + (cfg.cfg_scale + 1) * (cond - unc), 2


def _select(scores: torch.Tensor, eligible: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Bool (B, L): the ``k[b]`` highest-scoring eligible positions of each row."""
    keyed = torch.where(eligible, scores.clamp_min(SUPPRESSED), NEG_INF)  # (B, L)
    kmax = int(k.max())
    commit = torch.zeros_like(eligible)
    if kmax == 0:
        return commit
    top = keyed.topk(kmax, dim=-1)
    take = torch.arange(kmax, device=k.device)[None, :] < k[:, None]  # (B, kmax)
    take &= top.values > NEG_INF
    return commit.scatter(1, top.indices, take)


@torch.inference_mode()
def decode(
    model: DiffusionLM,
    prompts: Sequence[str] | Sequence[Sequence[int]] | torch.Tensor,
    config: DecodeConfig | dict[str, Any],
    callbacks: Sequence[DecodeCallback] = (),
    attention_mask: torch.Tensor | None = None,
) -> DecodeOutput:
    """Generate ``config.gen_length`` tokens for each prompt by iterative unmasking.

    ``prompts``: user messages (chat template applied), lists of token ids, or a left-padded (B, P)
    tensor with ``attention_mask``. Returns a :class:`DecodeOutput`; an empty prompt list returns an
    empty one without touching the model.
    """
    cfg = config if isinstance(config, DecodeConfig) else DecodeConfig.from_dict(dict(config))
    device = next(model.parameters()).device
    if len(prompts) == 0:
        empty = torch.empty(0, cfg.gen_length, dtype=torch.long)
        return DecodeOutput(empty, [], 0, torch.empty(0, 0, dtype=torch.long))
    prompt_ids, prompt_mask = prepare_prompts(model, prompts, attention_mask)
    B, P, L = prompt_ids.shape[0], prompt_ids.shape[1], cfg.gen_length
    if P + L > model.max_length:
        raise ConfigError(
            f"prompt ({P} tokens) + decoder.gen_length={L} exceeds the model's context of {model.max_length} "
            "tokens; lower decoder.gen_length or shorten the prompt"
        )
    mask_id = model.mask_token_id
    canvas = torch.cat([prompt_ids, torch.full((B, L), mask_id, dtype=torch.long)], 1).to(device)
    attn = torch.cat([prompt_mask, torch.ones(B, L, dtype=torch.long)], 1).to(device)
    gen = torch.Generator(device).manual_seed(cfg.seed) if cfg.seed is not None else None
    eos_ids = torch.tensor(model.eos_token_ids, device=device)
    stop_ids = torch.tensor(model.eos_token_ids + model.eot_token_ids, device=device)
    positions = torch.arange(L, device=device)

    state = DecodeState(canvas=canvas, prompt_length=P)
    for cb in callbacks:
        cb.on_decode_start(state)
    nfe = step = 0
    for block in range(cfg.num_blocks):
        lo, hi = block * cfg.block, (block + 1) * cfg.block
        in_block = (positions >= lo) & (positions < hi)  # (L,)
        counts = linear_counts((canvas[:, P + lo : P + hi] == mask_id).sum(1), cfg.steps_per_block)  # (B, q)
        for j in range(cfg.steps_per_block):
            logits, passes = _model_logits(model, canvas, attn, cfg, P)  # (B, L, V)
            nfe += passes
            if cfg.logits_eos_inf:
                logits = logits.index_fill(-1, eos_ids, NEG_INF)
            if cfg.top_k is not None or cfg.top_p is not None:
                logits = filter_logits(logits, cfg.top_k, cfg.top_p)
            gen_region = canvas[:, P:]  # (B, L) view
            masked = gen_region == mask_id
            x0 = torch.where(masked, sample_tokens(logits, cfg.temperature, gen), gen_region)  # (B, L)
            scores = position_scores(logits, x0, cfg.scorer, gen)  # (B, L)
            if cfg.confidence_eos_eot_inf:
                scores = scores.masked_fill(torch.isin(x0, stop_ids), NEG_INF)
            eligible = masked & in_block
            commit = _select(scores, eligible, counts[:, j])
            gen_region[commit] = x0[commit]  # writes through to canvas; never touches committed tokens

            state.step, state.block, state.nfe = step, block, nfe
            state.prediction, state.committed, state.masked = x0, commit, masked & ~commit
            state.confidence = scores.masked_fill(~eligible, NEG_INF)
            for cb in callbacks:
                cb.on_step(state)
            step += 1

    sequences = canvas[:, P:].cpu()
    texts = [model.decode_completion(row) for row in sequences]
    output = DecodeOutput(sequences=sequences, texts=texts, nfe=nfe, prompt_ids=prompt_ids)
    for cb in callbacks:
        cb.on_decode_end(state, output)
    return output
