"""How many tokens each step commits, and where the blocks are (docs/methods.md "Schedules and blocks").

Schedules are pure functions of per-row masked counts, so pre-filled tokens (infilling templates)
simply lower the counts. :func:`block_plan` turns a :class:`DecodeConfig` into the list of blocks the
loop walks through; adaptive rules (``rules.py``) use the same blocks with no count.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from dllm_lab.decoding.config import DecodeConfig


def linear_counts(num_masked: torch.Tensor, steps: int) -> torch.Tensor:
    """LLaDA's even split: ``k_j = n // q`` plus one for the first ``n % q`` steps.

    ``num_masked`` (B,) masked tokens per row in the block; returns (B, steps) counts summing to it.
    (Nie et al. 2025, LLaDA, Appendix B: ``get_num_transfer_tokens``.)
    """
    base = num_masked // steps  # (B,)
    remainder = num_masked % steps  # (B,)
    step_idx = torch.arange(steps, device=num_masked.device)  # (S,)
    return base[:, None] + (step_idx[None, :] < remainder[:, None]).long()


def ascending_schedule(gen_length: int, num_blocks: int = 1) -> list[list[int]]:
    """ASS, ascending step size (Yang et al. 2025, "Taming MDLMs ... Fewer Decoding Steps", Sec. 4).

    ``S = log2 L`` steps; step ``s`` commits ``2^s`` tokens and the last commits the rest
    (L=256: [1, 2, 4, ..., 64, 129]). With ``n`` blocks, blocks are peeled from the right: the last
    block holds the last step, each earlier block one earlier step, the first block the remaining small
    steps. Returns the nominal counts of each block, e.g. L=256, n=4 ->
    ``[[1, 2, 4, 8, 16], [32], [64], [129]]`` (block sizes 31, 32, 64, 129).
    """
    if gen_length < 2 or gen_length & (gen_length - 1):
        raise ValueError(f"ascending schedule needs a power-of-two length >= 2, got {gen_length}")
    S = gen_length.bit_length() - 1
    if not 1 <= num_blocks <= S:
        raise ValueError(f"ascending schedule with L={gen_length} allows 1..{S} blocks, got {num_blocks}")
    counts = [2**s for s in range(S - 1)] + [gen_length - (2 ** (S - 1) - 1)]
    head = S - (num_blocks - 1)  # the first block takes the first `head` steps
    return [counts[:head]] + [[c] for c in counts[head:]]


def ascending_counts(num_masked: torch.Tensor, nominal: list[int]) -> torch.Tensor:
    """Per-row counts (B, q) of a block with nominal ASS counts ``nominal`` (q,) when a row has only
    ``num_masked`` (B,) masked tokens (pre-filled template tokens): each step commits its nominal count
    while tokens remain, the last step commits whatever is left."""
    cum = torch.tensor(nominal, device=num_masked.device).cumsum(0)  # (q,)
    cum = torch.minimum(cum[None, :], num_masked[:, None]).clone()  # (B, q)
    cum[:, -1] = num_masked
    return torch.diff(cum, dim=1, prepend=torch.zeros_like(cum[:, :1]))


def origin_counts(
    num_masked: torch.Tensor, step: int, steps: int, eps: float = 1e-3, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Dream's ``origin`` reveal count at ``step`` of ``steps`` (Ye et al. 2025, Dream 7B, ``_sample``).

    Dream reveals each masked position independently with probability ``1 - t_next / t`` on the grid
    ``t = linspace(1, eps, steps + 1)``, and everything left on the last step. The number revealed is
    therefore ``Binomial(n, 1 - t_next/t)``; drawing that count here and letting the ``random`` scorer
    pick a uniform subset of that size is the same distribution. ``num_masked`` (B,) -> (B,) counts.
    """
    if step >= steps - 1:
        return num_masked.clone()
    grid = torch.linspace(1.0, eps, steps + 1, dtype=torch.float64)
    p_reveal = float(1.0 - grid[step + 1] / grid[step])
    n = num_masked.to(torch.float32)
    return torch.binomial(n, torch.full_like(n, p_reveal), generator=generator).long()


@dataclass(frozen=True)
class Block:
    """One block of the generation region: positions ``[lo, hi)``; ``steps`` scheduled steps (``None``:
    adaptive, run until no mask is left); ``nominal`` ASS counts when the schedule is ascending;
    ``first_step`` the global index of its first scheduled step (EOSER uses the global step)."""

    lo: int
    hi: int
    steps: int | None
    first_step: int = 0
    nominal: tuple[int, ...] | None = None


def block_plan(cfg: DecodeConfig) -> list[Block]:
    """The blocks of a decode, in order, with their scheduled steps."""
    if cfg.adaptive is None and cfg.schedule == "ascending":
        blocks, lo, first = [], 0, 0
        for nominal in ascending_schedule(cfg.gen_length, cfg.num_blocks):
            blocks.append(Block(lo, lo + sum(nominal), len(nominal), first, tuple(nominal)))
            lo, first = lo + sum(nominal), first + len(nominal)
        return blocks
    q = None if cfg.adaptive is not None else cfg.steps_per_block
    return [Block(b * cfg.block, (b + 1) * cfg.block, q, b * (q or 0)) for b in range(cfg.num_blocks)]


def block_counts(cfg: DecodeConfig, block: Block, num_masked: torch.Tensor) -> torch.Tensor | None:
    """Counts (B, q) fixed at the start of ``block`` from its per-row masked counts (B,); ``None`` when
    they are drawn per step (``origin``) or when an adaptive rule decides."""
    if block.steps is None or cfg.schedule == "origin":
        return None
    if block.nominal is not None:
        return ascending_counts(num_masked, list(block.nominal))
    return linear_counts(num_masked, block.steps)
