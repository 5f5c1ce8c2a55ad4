"""Fast-dLLM's key/value caches for semi-autoregressive decoding (docs/methods.md "KV cache", arXiv 2505.22618).

At the first forward pass of every block, one full pass over the canvas gives this step's logits and the
keys/values of every position. The cache keeps those of the prompt and the finished blocks (``prefix``),
and also those of the still-masked positions after the block (``dual``). The block's later steps then run
only on ``[block | later positions]`` (prefix) or on the block (dual), attending to the cached keys.
``window`` > 0 [ours] makes the dual cache recompute the first ``window`` positions after the block at
every step as well: they are the cached keys that go stale fastest as the block fills.

Everything goes through the transformers cache interface (``past_key_values`` as a ``DynamicCache``,
explicit ``position_ids``, a 4D boolean mask), so it serves any model whose forward takes them
(:attr:`DiffusionLM.can_cache`). Attention is bidirectional, so the order of keys in the cache does not
matter: the dual cache holds ``[prefix | suffix]`` and each step appends the block's keys behind them, with
the block's true positions in ``position_ids``; the step's keys are cropped off again afterwards.

Positions whose logits a step does not compute keep those of the last pass that did (the block's refresh,
or an earlier step), so callbacks still see ``(B, L, V)`` logits and a prediction for every position.
"""

from __future__ import annotations

import torch

from dllm_lab.decoding.schedules import Block
from dllm_lab.errors import ConfigError
from dllm_lab.models.adapter import DiffusionLM, full_attention


def check_cache(model: DiffusionLM, mode: str, where: str = "decoder") -> None:
    """Refuse a cache the model cannot use, before any forward pass (``where``: the config key of the decoder)."""
    if mode != "none" and not model.can_cache:
        raise ConfigError(
            f"{where}.cache={mode}: {type(model.model).__name__} (family {model.family!r}) cannot cache keys/values; "
            f"set {where}.cache=none, or use a model of the 'bidirectional' family (a transformers decoder such as "
            "Llama run with full attention, e.g. model=tiny_scratch model.init.arch=llama): caching needs a forward "
            "that takes past_key_values with explicit positions and returns aligned logits")


class BlockKVCache:
    """Logits of the generation region for each step of a decode, from a prefix or dual cache.

    Args:
        model: a model that can cache (:attr:`DiffusionLM.can_cache`).
        mode: ``prefix`` or ``dual``.
        attention_mask: ``(B, P + L)``, 1 = real token (left padding is 0).
        prompt_length: ``P``.
        refresh_every: also rebuild the cache at every ``refresh_every``-th pass of a block (``None``: only at
            its first pass).
        window: ``dual`` only: the first ``window`` positions after the block are recomputed at every pass with
            the block instead of cached (0: Fast-dLLM's dual cache).
    """

    def __init__(self, model: DiffusionLM, mode: str, attention_mask: torch.Tensor, prompt_length: int,
                 refresh_every: int | None = None, window: int = 0) -> None:
        check_cache(model, mode)
        self.model, self.mode, self.P = model, mode, prompt_length
        self.refresh_every, self.since_refresh, self.window = refresh_every, 0, window
        self.real = attention_mask.bool()  # (B, N)
        self.full_mask, self.positions = full_attention(attention_mask, attention_mask)  # (B, 1, N, N), (B, N)
        self.past = None
        self.query = (0, 0)  # canvas columns [a, b) a cached step runs on
        self.step_mask: torch.Tensor | None = None
        self.buffer: torch.Tensor | None = None  # (B, L, V): the latest logits of every generation position

    def logits(self, canvas: torch.Tensor, block: Block, refresh: bool) -> torch.Tensor:
        """Logits ``(B, L, V)`` of this step; ``refresh``: the block's first pass (a full forward that rebuilds
        the cache)."""
        self.since_refresh += 1
        if refresh or self.past is None or (self.refresh_every and self.since_refresh >= self.refresh_every):
            self.since_refresh = 0
            return self._refresh(canvas, block)
        a, b = self.query
        out, _ = self.model.cached_forward(canvas[:, a:b], self.step_mask, self.positions[:, a:b], self.past)
        self.past.crop(a - b)  # drop the keys this step appended: the cache holds the refresh's only
        self.buffer[:, a - self.P : b - self.P] = out
        return self.buffer.clone()  # callbacks may keep a step's logits; later steps write into the buffer

    def _refresh(self, canvas: torch.Tensor, block: Block) -> torch.Tensor:
        from transformers import DynamicCache

        P, N = self.P, canvas.shape[1]
        logits, past = self.model.cached_forward(canvas, self.full_mask, self.positions, DynamicCache())
        if past is None:
            raise ConfigError(f"{type(self.model.model).__name__} returned no past_key_values; set decoder.cache=none")
        lo, hi = P + block.lo, min(P + block.hi + self.window, N)  # hi: the end of what each step recomputes
        if self.mode == "dual" and hi < N:
            keep = torch.cat([torch.arange(lo), torch.arange(hi, N)]).to(canvas.device)
            self.query = (lo, hi)
        else:  # prefix (or a dual cache of the last block, which has nothing after it)
            keep = torch.arange(lo, device=canvas.device)
            self.query = (lo, N)
        a, b = self.query
        self.past = DynamicCache(ddp_cache_data=[(k[:, :, keep], v[:, :, keep]) for k, v, *_ in past])
        keys = torch.cat([self.real[:, keep], self.real[:, a:b]], 1)  # (B, cached + q): padding keys are False
        self.step_mask = keys[:, None, None, :].expand(-1, 1, b - a, -1)
        self.buffer = logits[:, P:]
        return self.buffer.clone()
