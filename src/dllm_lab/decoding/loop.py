"""The batched denoising loop shared by every decoder (docs/methods.md, from "The denoising step" to "Infilling").

One function, :func:`decode`, runs ``[prompt | generation region]`` canvases to completion. Each step:
forward pass -> candidates ``x0`` -> scores (+ modifiers) -> the commit set (a schedule's count via
:func:`select_topk`, or an adaptive rule) -> callbacks. The parts come from ``schedules.py``,
``scorers.py``, ``rules.py`` and ``infill.py``; the loop only wires them. Committed and pre-filled tokens
never change. Everything per step is a batched tensor operation; there is no per-sample Python loop.

NFE: ``DecodeOutput.nfe`` counts the batch's forward passes (a CFG step counts 2);
``DecodeOutput.nfe_per_sample`` (B,) counts, per row, the passes of steps in which that row commits,
i.e. what the row would cost decoded alone (rows finish at different times under adaptive rules and
early exit). A step in which no row has anything to commit (only possible with pre-filled tokens or
``origin`` drawing zero) is skipped without a forward pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from dllm_lab.decoding.cache import BlockKVCache
from dllm_lab.decoding.callbacks import DecodeCallback
from dllm_lab.decoding.config import DecodeConfig
from dllm_lab.decoding.infill import EarlyExit, InfillTemplate, encode_answers, template_text
from dllm_lab.decoding.rules import adaptive_select, select_topk
from dllm_lab.decoding.schedules import Block, block_counts, block_plan, origin_counts
from dllm_lab.decoding.scorers import (
    apply_eoser,
    entropy_from_log_probs,
    eoser_gamma,
    filter_logits,
    log_probs,
    sample_tokens,
    scores_from_log_probs,
)
from dllm_lab.decoding.state import NEEDS, DecodeOutput, DecodeState
from dllm_lab.errors import ConfigError
from dllm_lab.models.adapter import DiffusionLM
from dllm_lab.models.chat import left_pad

NEG_INF = float("-inf")


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


def _model_logits(
    model: DiffusionLM, canvas: torch.Tensor, attn: torch.Tensor, cfg: DecodeConfig, P: int
) -> tuple[torch.Tensor, int]:
    """Logits of the generation region (B, L, V) and the number of forward passes used."""
    if cfg.cfg_scale <= 0:
        return model.logits(canvas, attn)[:, P:], 1
    # Classifier-free guidance: the unconditional pass sees the prompt fully masked.
    uncond = canvas.clone()
    uncond[:, :P] = torch.where(attn[:, :P].bool(), model.mask_token_id, canvas[:, :P])
    both = model.logits(torch.cat([canvas, uncond]), torch.cat([attn, attn]))[:, P:]
    cond, unc = both.chunk(2)
    return unc + (cfg.cfg_scale + 1) * (cond - unc), 2


@dataclass
class _Prediction:
    """One forward pass, processed: logits (B, L, V), candidates x0 (B, L), scores (B, L) after the
    modifiers, entropy (B, L) of the processed logits when asked."""

    logits: torch.Tensor
    x0: torch.Tensor
    scores: torch.Tensor
    entropy: torch.Tensor | None


def _predict(
    logits: torch.Tensor,
    gen_region: torch.Tensor,
    masked: torch.Tensor,
    cfg: DecodeConfig,
    ids: dict[str, torch.Tensor],
    generator: torch.Generator | None,
    gamma: float | None,
    want_entropy: bool,
) -> _Prediction:
    """Steps 2-5 of docs/methods.md "The denoising step" on the generation region's logits (B, L, V)."""
    # [ours] the mask token is never a candidate: committing it would leave a position "masked" forever
    # (in place: ``logits`` is this step's own output, a copy would cost another (B, L, V))
    logits.index_fill_(-1, ids["mask"], NEG_INF)
    if cfg.logits_eos_inf:
        logits.index_fill_(-1, ids["eos"], NEG_INF)
    if cfg.top_k is not None or cfg.top_p is not None:
        logits = filter_logits(logits, cfg.top_k, cfg.top_p)
    x0 = torch.where(masked, sample_tokens(logits, cfg.temperature, generator, masked), gen_region)  # (B, L)
    logp = log_probs(logits) if cfg.scorer != "random" or want_entropy else None  # (B, L, V), once
    scores = scores_from_log_probs(logp, x0, cfg.scorer, generator)  # (B, L)
    entropy = None
    if want_entropy:
        entropy = -scores if cfg.scorer == "entropy" else entropy_from_log_probs(logp)  # type: ignore[arg-type]
    if gamma is not None:
        scores = apply_eoser(scores, torch.isin(x0, ids["eoser"]), gamma)
    if cfg.confidence_eos_eot_inf:
        # on the candidate actually drawn, so it holds at any temperature
        scores = scores.masked_fill(torch.isin(x0, ids["stop"]), NEG_INF)
    return _Prediction(logits, x0, scores, entropy)


def _planned_nfe(plan: list[Block], cfg: DecodeConfig, masked: torch.Tensor, passes: int) -> torch.Tensor | None:
    """Per-row NFE (B,) of a decode nobody stops early; ``None`` if the counts depend on the data."""
    if cfg.adaptive is not None or cfg.schedule == "origin":
        return None
    total = torch.zeros(masked.shape[0], dtype=torch.long, device=masked.device)
    for block in plan:
        counts = block_counts(cfg, block, masked[:, block.lo : block.hi].sum(1))
        assert counts is not None
        total += passes * (counts > 0).sum(1)
    return total


def _check_needs(callbacks: Sequence[DecodeCallback]) -> frozenset[str]:
    needs = frozenset().union(*(cb.needs for cb in callbacks))
    unknown = needs - NEEDS
    if unknown:
        raise ValueError(f"callbacks need unknown per-step tensors {sorted(unknown)}; available: {sorted(NEEDS)}")
    return needs


@torch.inference_mode()
def decode(
    model: DiffusionLM,
    prompts: Sequence[str] | Sequence[Sequence[int]] | torch.Tensor,
    config: DecodeConfig | dict[str, Any],
    callbacks: Sequence[DecodeCallback] = (),
    attention_mask: torch.Tensor | None = None,
    answers: Sequence[str] | Sequence[Sequence[int]] | None = None,
) -> DecodeOutput:
    """Generate ``config.gen_length`` tokens for each prompt by iterative unmasking.

    ``prompts``: user messages (chat template applied), lists of token ids, or a left-padded (B, P)
    tensor with ``attention_mask``. ``answers``: gold answers (text or ids), one per prompt, for
    posterior sampling ``p(r | c, a*)`` with ``decoder.infill=true``: the answer block is pre-filled and
    only the reasoning is decoded. With ``decoder.early_exit`` an :class:`EarlyExit` callback is added.
    Returns a :class:`DecodeOutput`; an empty prompt list returns an empty one without touching the model.
    """
    cfg = config if isinstance(config, DecodeConfig) else DecodeConfig.from_dict(dict(config))
    device = next(model.parameters()).device
    if len(prompts) == 0:
        empty = torch.empty(0, cfg.gen_length, dtype=torch.long)
        return DecodeOutput(empty, [], 0, torch.empty(0, 0, dtype=torch.long), torch.empty(0, dtype=torch.long))
    # -- everything that can fail, before any forward pass ------------------------------------------------
    if answers is not None and not cfg.infill:
        raise ConfigError(
            "posterior sampling (answers=...) pre-fills the answer block of the template; set decoder.infill=true"
        )
    if answers is not None and cfg.early_exit:
        raise ConfigError(
            "decoder.early_exit=true: posterior sampling pre-fills the answer, so there is nothing to exit on; "
            "set decoder.early_exit=false"
        )
    prompt_ids, prompt_mask = prepare_prompts(model, prompts, attention_mask)
    B, P, L = prompt_ids.shape[0], prompt_ids.shape[1], cfg.gen_length
    if P + L > model.max_length:
        raise ConfigError(
            f"prompt ({P} tokens) + decoder.gen_length={L} exceeds the model's context of {model.max_length} "
            "tokens; lower decoder.gen_length or shorten the prompt"
        )
    mask_id = model.mask_token_id
    template = InfillTemplate.from_config(cfg, model.tokenizer) if cfg.infill else None
    if template is not None:
        gold = encode_answers(model.tokenizer, answers) if answers is not None else None
        region, fixed = template.canvas(B, mask_id, model.eos_token_ids[0], gold)
    else:
        region, fixed = torch.full((B, L), mask_id, dtype=torch.long), None
    callbacks = list(callbacks)
    if cfg.early_exit and template is not None:
        callbacks.append(EarlyExit(template.answer_mask(), cfg.early_exit_threshold, cfg.early_exit_reduction))
    needs = _check_needs(callbacks)

    canvas = torch.cat([prompt_ids, region], 1).to(device)  # (B, P+L)
    attn = torch.cat([prompt_mask, torch.ones(B, L, dtype=torch.long)], 1).to(device)
    gen = torch.Generator(device).manual_seed(cfg.seed) if cfg.seed is not None else None
    eoser_ids = cfg.eoser_token_ids or model.eos_token_ids
    ids = {
        "eos": torch.tensor(model.eos_token_ids, device=device),
        "stop": torch.tensor(model.eos_token_ids + model.eot_token_ids, device=device),
        "eoser": torch.tensor(eoser_ids, device=device),
        "mask": torch.tensor([mask_id], device=device),
    }
    positions = torch.arange(L, device=device)
    plan = block_plan(cfg)
    passes = 2 if cfg.cfg_scale > 0 else 1
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    nfe_rows = torch.zeros(B, dtype=torch.long, device=device)
    # a model that cannot cache is refused here, before any forward pass
    kv = BlockKVCache(model, cfg.cache, attn, P, cfg.cache_refresh, cfg.cache_window) if cfg.cache != "none" else None

    state = DecodeState(
        canvas=canvas, prompt_length=P, total_steps=cfg.total_steps, nfe_per_sample=nfe_rows, finished=finished,
        fixed=None if fixed is None else fixed.to(device), masked=canvas[:, P:] == mask_id,
        planned_nfe_per_sample=_planned_nfe(plan, cfg, canvas[:, P:] == mask_id, passes),
    )
    for cb in callbacks:
        cb.on_decode_start(state)
    nfe = step = 0
    for block_idx, block in enumerate(plan):
        if bool(finished.all()):
            break
        in_block = (positions >= block.lo) & (positions < block.hi)  # (L,)
        counts = block_counts(cfg, block, (canvas[:, P + block.lo : P + block.hi] == mask_id).sum(1))  # (B, q)
        refresh = True  # the block's first forward pass rebuilds the KV cache
        # adaptive rules commit >= 1 token per active row and step, so a block takes at most its length
        for j in range(block.steps if block.steps is not None else block.hi - block.lo):
            gen_region = canvas[:, P:]  # (B, L) view: writes go to the canvas
            masked = gen_region == mask_id
            eligible = masked & in_block & ~finished[:, None]  # (B, L)
            k = None
            if block.steps is not None:
                k = counts[:, j] if counts is not None else origin_counts(
                    eligible.sum(1), j, block.steps, cfg.origin_eps, gen)  # (B,)
                active = eligible.any(1) & (k > 0)
            else:
                active = eligible.any(1)
            if not bool(active.any()):
                if block.steps is None:
                    break  # adaptive: the block is done
                continue  # nothing to commit at this step: no forward pass
            eligible &= active[:, None]

            if kv is not None:
                logits, used, refresh = kv.logits(canvas, block, refresh), 1, False  # (B, L, V)
            else:
                logits, used = _model_logits(model, canvas, attn, cfg, P)  # (B, L, V)
            nfe += used
            nfe_rows += used * active.long()
            gamma = None
            if cfg.eoser:
                gamma = eoser_gamma(block.first_step + j, cfg.total_steps, cfg.gamma_min, cfg.eoser_gamma_max,
                                    ascending=cfg.schedule == "ascending")
            pred = _predict(logits, gen_region, masked, cfg, ids, gen, gamma, "entropy" in needs)

            state.step, state.block, state.block_range, state.nfe = step, block_idx, (block.lo, block.hi), nfe
            state.active, state.masked, state.prediction, state.committed = active, masked, pred.x0, None
            state.confidence = pred.scores.masked_fill(~eligible, NEG_INF)
            state.entropy = pred.entropy
            state.argmax = pred.logits.argmax(-1) if "argmax" in needs else None
            state.logits = pred.logits if "logits" in needs else None
            state.phase, state.stop_rows, state.fill = "forward", None, None
            for cb in callbacks:
                cb.on_forward(state)

            if k is not None:
                commit = select_topk(pred.scores, eligible, k)  # (B, L)
            else:
                commit = adaptive_select(cfg.adaptive, pred.scores, eligible, cfg.threshold, cfg.factor, cfg.med_lambda)
            tokens = pred.x0
            if state.fill is not None:  # a controller (early exit) fills positions with this pass' argmax
                fill = state.fill & masked
                argmax = state.argmax if state.argmax is not None else pred.logits.argmax(-1)
                tokens = torch.where(fill, argmax, tokens)
                commit = commit | fill
            gen_region[commit] = tokens[commit]  # never touches committed or pre-filled tokens

            state.phase, state.committed, state.masked = "step", commit, masked & ~commit
            state.prediction = torch.where(commit, tokens, pred.x0)
            for cb in callbacks:
                cb.on_step(state)
            if state.stop_rows is not None:
                finished |= state.stop_rows.to(device)
            step += 1
            if bool(finished.all()):
                break
        left = (canvas[:, P + block.lo : P + block.hi] == mask_id) & ~finished[:, None]
        if block.steps is None and bool(left.any()):
            raise RuntimeError(f"adaptive rule {cfg.adaptive!r} left masks in block {block_idx} (a bug: every step "
                               "must commit at least one eligible position per row)")

    sequences = canvas[:, P:].cpu()
    if template is not None:
        drop = (mask_id, *model.end_token_ids)
        texts = [template_text(row, model.tokenizer, drop) for row in sequences]
    else:
        texts = [model.decode_completion(row) for row in sequences]
    output = DecodeOutput(sequences=sequences, texts=texts, nfe=nfe, prompt_ids=prompt_ids,
                          nfe_per_sample=nfe_rows.cpu())
    state.phase = "end"
    for cb in callbacks:
        cb.on_decode_end(state, output)
    return output
