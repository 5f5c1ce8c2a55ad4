"""``DecodeConfig``: every decoding knob in one typed, validated dataclass.

Validation happens before any forward pass; each error names the setting (as a Hydra override,
``decoder.<field>``) and how to fix it. A decoder is a composition, not a named algorithm:

    scorer (which positions)  x  schedule (how many per step) | adaptive rule (data-dependent set)
      x  blocks (where)  x  modifiers (temperature, top-k/p, CFG, EOS suppression, EOSER)
      x  infilling template / early exit

The presets in ``configs/decoder/`` are such compositions (``semi_ar`` = low_confidence x linear x
blocks of 16, ``threshold`` = low_confidence x Fast-dLLM threshold x blocks, ...).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, fields
from typing import Any

from dllm_lab.errors import ConfigError
from dllm_lab.tasks.base import D1_ANSWER_CLOSE, D1_ANSWER_OPEN

SCORERS = ("low_confidence", "margin", "entropy", "random")
SCHEDULES = ("linear", "ascending", "origin")
ADAPTIVE_RULES = ("threshold", "factor", "med", "ar_med")
EXIT_REDUCTIONS = ("max", "mean")
CACHE_MODES = ("none", "prefix", "dual")
# Default lowest EOSER factor (Taming MDLMs, section 3): uniform steps vs ascending step size.
EOSER_GAMMA_MIN_UNIFORM, EOSER_GAMMA_MIN_ASCENDING = 0.4, 0.01


@dataclass(frozen=True)
class DecodeConfig:
    """Settings of the denoising loop (docs/methods.md, from "The denoising step" to "Infilling").

    Canvas and blocks
      gen_length: tokens generated after the prompt (the generation region ``L``).
      block_length: semi-autoregressive block size; ``gen_length`` (or ``None``) is full diffusion. With
        ``schedule=ascending`` it sets the number of blocks ``n = gen_length / block_length``, whose sizes
        are then peeled from the right (section 2), e.g. L=256, n=4 -> [31, 32, 64, 129].
      steps: denoising steps of the whole generation (``steps / num_blocks`` per block). Derived, hence
        ``None`` (or exactly ``log2 L``), with ``schedule=ascending``; ``None`` with an ``adaptive`` rule,
        whose step count depends on the data (``DecodeOutput.nfe`` reports it).
    Which positions, how many
      scorer: how eligible masked positions are ranked (low_confidence, margin, entropy, random).
      schedule: tokens per step: ``linear`` (LLaDA even split), ``ascending`` (ASS, 2^s per step),
        ``origin`` (Dream: Binomial count with reveal probability ``1 - t_next/t``; with ``scorer=random``
        this is exactly Dream's per-position Bernoulli reveal). origin_eps: last time of its grid.
      adaptive: ``None`` (commit the schedule's count) or a data-dependent rule replacing the schedule:
        ``threshold`` (c >= threshold), ``factor`` (rank n kept while c >= 1 - factor/(n+1)), ``med``
        (argmin entropy plus every H < med_lambda), ``ar_med`` (leftmost masked, extended right while
        H < med_lambda). Every rule commits at least one token per row and step.
    Modifiers
      temperature: Gumbel-max sampling temperature (float64 noise); 0 is greedy.
      top_k, top_p: optional filtering of the logits before sampling.
      cfg_scale: classifier-free guidance weight ``w`` (each step then costs 2 forward passes).
      logits_eos_inf: forbid EOS as a candidate token (LLaDA option).
      confidence_eos_eot_inf: never prefer a position whose candidate is EOS/EOT (LLaDA option).
      eoser: EOS early rejection: scale the score of EOS candidates by gamma_s rising from
        ``eoser_gamma_min`` (default 0.4, or 0.01 with ascending) to ``eoser_gamma_max`` over the global
        step; ``eoser_token_ids`` which ids count as EOS (default: the model's EOS ids).
      seed: seed of the sampling noise, random scores and origin counts (``None``: torch's global RNG).
    Reasoning-as-infilling (No Compute Left Behind)
      infill: decode into the template ``[m x R | delimiter | m x A | closing]``; pre-filled tokens are
        fixed. infill_reasoning_length: ``R`` (``None``: whatever is left of gen_length; a shorter
        template is padded with EOS). infill_answer_length: ``A``. infill_delimiter, infill_closing: text.
      posterior: sample the reasoning given the gold answer, p(r | c, a*): evaluation pre-fills each
        example's gold answer into the answer block (``decode(..., answers=...)``) and records the traces.
      cache: ``none``, ``prefix`` or ``dual`` (Fast-dLLM): reuse the keys/values of the prompt and finished
        blocks (prefix), and also of the masked positions after the block (dual), within each block; refreshed
        by one full pass at every block's first step. Needs a model that can cache (``DiffusionLM.can_cache``).
        cache_refresh: also refresh every ``cache_refresh``-th pass within a block (``None``: only at its first
        pass, as Fast-dLLM does); smaller is closer to the uncached decode and slower.
        cache_window: dual only: recompute the first ``cache_window`` positions after the block at every pass
        rather than cache them (0: Fast-dLLM's dual cache); larger is closer to the prefix cache and slower.
      early_exit: stop a row once ``U`` (``early_exit_reduction`` of the entropy over its still-masked
        answer positions) is below ``early_exit_threshold``, filling the answer with that pass' argmax.
    """

    gen_length: int = 64
    block_length: int | None = 16
    steps: int | None = 64
    scorer: str = "low_confidence"
    schedule: str = "linear"
    origin_eps: float = 1e-3
    adaptive: str | None = None
    threshold: float = 0.9
    factor: float = 1.0
    med_lambda: float = 0.2
    temperature: float = 0.0
    top_k: int | None = None
    top_p: float | None = None
    cfg_scale: float = 0.0
    logits_eos_inf: bool = False
    confidence_eos_eot_inf: bool = False
    eoser: bool = False
    eoser_gamma_min: float | None = None
    eoser_gamma_max: float = 1.0
    eoser_token_ids: tuple[int, ...] | None = None
    seed: int | None = None
    infill: bool = False
    infill_reasoning_length: int | None = None
    infill_answer_length: int = 16
    infill_delimiter: str = D1_ANSWER_OPEN
    infill_closing: str = D1_ANSWER_CLOSE
    early_exit: bool = False
    early_exit_threshold: float = 0.1
    early_exit_reduction: str = "max"
    posterior: bool = False
    cache: str = "none"
    cache_refresh: int | None = None
    cache_window: int = 0

    def __post_init__(self) -> None:
        if self.eoser_token_ids is not None:  # YAML / OmegaConf lists -> a hashable tuple of ints
            object.__setattr__(self, "eoser_token_ids", tuple(int(i) for i in self.eoser_token_ids))
        self.validate()

    # -- derived values ---------------------------------------------------------------------------------
    @property
    def block(self) -> int:
        return self.block_length or self.gen_length

    @property
    def num_blocks(self) -> int:
        return self.gen_length // self.block

    @property
    def steps_per_block(self) -> int:
        """Steps of each block for ``linear`` / ``origin`` (equal blocks)."""
        return self.total_steps // self.num_blocks if self.total_steps else 0

    @property
    def total_steps(self) -> int | None:
        """Scheduled steps of the whole decode: ``steps``, ``log2 L`` for ascending, ``None`` if adaptive."""
        if self.adaptive is not None:
            return None
        if self.schedule == "ascending":
            return self.gen_length.bit_length() - 1
        return self.steps

    @property
    def gamma_min(self) -> float:
        """EOSER's lowest factor, defaulting per schedule (Taming MDLMs)."""
        if self.eoser_gamma_min is not None:
            return self.eoser_gamma_min
        return EOSER_GAMMA_MIN_ASCENDING if self.schedule == "ascending" else EOSER_GAMMA_MIN_UNIFORM

    # -- validation ---------------------------------------------------------------------------------------
    def validate(self, prefix: str = "decoder") -> None:
        def need(ok: bool, field: str, message: str) -> None:
            if not ok:
                raise ConfigError(f"{prefix}.{field}={getattr(self, field)!r}: {message}")

        L = self.gen_length
        need(L > 0, "gen_length", "must be a positive number of tokens")
        need(self.block > 0, "block_length", "must be positive (or null for full diffusion)")
        hint = _divisor_hint(L, self.block)
        need(L % self.block == 0, "block_length", f"must divide gen_length={L}; e.g. block_length={hint}")
        need(self.scorer in SCORERS, "scorer", f"choose one of {SCORERS}")
        need(self.schedule in SCHEDULES, "schedule", f"choose one of {SCHEDULES}")
        need(self.adaptive is None or self.adaptive in ADAPTIVE_RULES, "adaptive",
             f"choose null or one of {ADAPTIVE_RULES}")
        if self.adaptive is not None:
            self._validate_adaptive(need)
        elif self.schedule == "ascending":
            self._validate_ascending(need)
        else:
            need(self.steps is not None and self.steps > 0, "steps",
                 f"must be a positive integer with schedule={self.schedule}")
            need(self.steps % self.num_blocks == 0, "steps",
                 f"must be a multiple of the number of blocks ({self.num_blocks} = gen_length/block_length)")
            need(self.steps <= L, "steps", f"must be <= gen_length={L} (>= 1 token per step)")
        need(0 < self.origin_eps < 1, "origin_eps", "must be in (0, 1) (Dream uses 1e-3)")
        need(0 <= self.threshold <= 1, "threshold", "must be a confidence in [0, 1] (Fast-dLLM uses 0.9)")
        need(self.factor > 0, "factor", "must be > 0 (Fast-dLLM uses 1.0)")
        need(self.med_lambda >= 0, "med_lambda", "must be an entropy >= 0 in nats (default 0.2)")
        need(self.temperature >= 0, "temperature", "must be >= 0 (0 is greedy)")
        need(self.top_k is None or self.top_k > 0, "top_k", "must be a positive integer or null")
        need(self.top_p is None or 0 < self.top_p <= 1, "top_p", "must be in (0, 1] or null")
        need(self.cfg_scale >= 0, "cfg_scale", "must be >= 0 (0 disables classifier-free guidance)")
        need(self.seed is None or self.seed >= 0, "seed", "must be a non-negative integer or null")
        need(self.cache in CACHE_MODES, "cache", f"choose one of {CACHE_MODES}")
        need(self.cache == "none" or self.cfg_scale == 0, "cache",
             "classifier-free guidance runs a second, prompt-masked pass the cache does not hold; set "
             "decoder.cache=none or decoder.cfg_scale=0")
        need(self.cache_refresh is None or self.cache_refresh >= 1, "cache_refresh",
             "must be a positive number of passes or null (refresh only at each block's first pass)")
        need(self.cache_window >= 0, "cache_window", "must be a number of positions >= 0 (0: Fast-dLLM's dual cache)")
        need(self.cache_window == 0 or self.cache == "dual", "cache_window",
             f"only the dual cache caches positions after the block (cache={self.cache}); set decoder.cache=dual "
             "or decoder.cache_window=0")
        self._validate_eoser(need)
        self._validate_infill(need)

    def _validate_adaptive(self, need: Any) -> None:
        rule = self.adaptive
        need(self.steps is None, "steps",
             f"adaptive={rule} decides the number of steps from the data; set decoder.steps=null")
        need(self.schedule == "linear", "schedule",
             f"adaptive={rule} replaces the schedule's counts; leave decoder.schedule=linear "
             "(or set decoder.adaptive=null)")
        if rule in ("threshold", "factor"):
            need(self.scorer != "entropy", "scorer",
                 f"adaptive={rule} compares a confidence in [0, 1]; use low_confidence or margin "
                 "(or adaptive=med for entropy)")
        else:
            need(self.scorer == "entropy", "scorer", f"adaptive={rule} selects by entropy; set decoder.scorer=entropy")

    def _validate_ascending(self, need: Any) -> None:
        L = self.gen_length
        need(L >= 2 and L & (L - 1) == 0, "gen_length",
             f"schedule=ascending needs a power of two >= 2 (e.g. {_pow2_hint(L)}): it runs log2(L) steps "
             "of 2^s tokens")
        S = L.bit_length() - 1
        need(self.steps is None or self.steps == S, "steps",
             f"schedule=ascending derives the steps (log2({L}) = {S}); set decoder.steps=null")
        need(self.num_blocks <= S, "block_length",
             f"schedule=ascending allows at most log2({L}) = {S} blocks; use block_length >= {L // _floor_pow2(S)}")

    def _validate_eoser(self, need: Any) -> None:
        if self.eoser:
            need(self.adaptive is None, "eoser",
                 "EOSER's gamma needs a fixed step count; use it with decoder.adaptive=null (or set eoser=false)")
        g_min = self.gamma_min
        need(0 < g_min <= self.eoser_gamma_max, "eoser_gamma_min",
             f"must be in (0, eoser_gamma_max={self.eoser_gamma_max}]")
        need(self.eoser_token_ids is None or len(self.eoser_token_ids) > 0, "eoser_token_ids",
             "must list at least one id, or be null for the model's EOS ids")

    def _validate_infill(self, need: Any) -> None:
        need(self.infill_answer_length > 0, "infill_answer_length", "must be a positive number of tokens")
        R = self.infill_reasoning_length
        need(R is None or R >= 0, "infill_reasoning_length", "must be >= 0 or null (the rest of gen_length)")
        if self.infill and R is not None:
            need(R + self.infill_answer_length <= self.gen_length, "infill_reasoning_length",
                 f"the template (reasoning {R} + answer {self.infill_answer_length} + delimiter) is longer than "
                 f"decoder.gen_length={self.gen_length}; lower it or raise gen_length")
        need(not self.early_exit or self.infill, "early_exit", "needs the infilling template; set decoder.infill=true")
        need(not self.posterior or self.infill, "posterior", "pre-fills the answer block of the infilling template; "
             "set decoder.infill=true (or use decoder=posterior)")
        need(not (self.posterior and self.early_exit), "posterior",
             "the answer is given, so there is nothing to exit on; set decoder.early_exit=false")
        need(self.early_exit_threshold >= 0, "early_exit_threshold", "must be an entropy >= 0 in nats (default 0.1)")
        need(self.early_exit_reduction in EXIT_REDUCTIONS, "early_exit_reduction", f"choose one of {EXIT_REDUCTIONS}")

    @classmethod
    def from_dict(cls, values: dict[str, Any], prefix: str = "decoder") -> DecodeConfig:
        """Build from a mapping (e.g. the Hydra ``decoder`` group); unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{prefix}: unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def replace(self, **changes: Any) -> DecodeConfig:
        return dataclasses.replace(self, **changes)


def _divisor_hint(n: int, near: int) -> int:
    divisors = [d for d in range(1, n + 1) if n % d == 0]
    return min(divisors, key=lambda d: abs(d - near))


def _pow2_hint(n: int) -> int:
    return max(2, 1 << (max(n, 1).bit_length() - 1))


def _floor_pow2(n: int) -> int:
    return 1 << (max(n, 1).bit_length() - 1)
