"""``TemporalSettings``: every parameter of the temporal signals in one validated object.

The ``temporal`` config block (``configs/temporal/default.yaml``) becomes one of these in
:mod:`dllm_lab.factory`; evaluation (TCV, TSE, EverPass, records, plots) and the TCR reward of RL both
read it, so a skip ratio or a weighting is set once for a whole run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from dllm_lab.errors import ConfigError
from dllm_lab.temporal.signals import TSE_ALPHA, TSE_SKIP_RATIO, VOTE_ALPHA, WEIGHTINGS


@dataclass(frozen=True)
class TemporalSettings:
    """Temporal signals of decoding (Time Is a Feature, arXiv 2508.09138); defaults are the paper's.

    vote_weightings: the TCV weightings to score (``fixed``, ``linear``, ``exp``); vote_alpha: ``alpha``
        of the ``exp`` vote weights ``exp(alpha * s / S)``.
    tse_skip_ratio: TSE drops the first ``floor(ratio * S)`` steps; tse_weighting / tse_alpha: the
        cluster-mass weights of TSE; tse_base: ``e`` for nats (default), 2 for bits.
    plots: draw the evaluation's PNGs; timeline_samples: at most this many samples per timeline panel.

    Raises :class:`ConfigError` naming the ``temporal.<key>`` override to fix.
    """

    vote_weightings: tuple[str, ...] = WEIGHTINGS
    vote_alpha: float = VOTE_ALPHA
    tse_skip_ratio: float = TSE_SKIP_RATIO
    tse_weighting: str = "exp"
    tse_alpha: float = TSE_ALPHA
    tse_base: float = math.e
    plots: bool = True
    timeline_samples: int = 100

    def __post_init__(self) -> None:
        weightings = self.vote_weightings
        weightings = (weightings,) if isinstance(weightings, str) else tuple(str(w) for w in weightings)
        object.__setattr__(self, "vote_weightings", weightings)

        def check(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        bad = [w for w in weightings if w not in WEIGHTINGS]
        check(not bad, f"temporal.vote_weightings: unknown {bad}; choose from {list(WEIGHTINGS)}")
        check(len(set(weightings)) == len(weightings), "temporal.vote_weightings: repeated entry")
        check(self.tse_weighting in WEIGHTINGS,
              f"temporal.tse_weighting={self.tse_weighting!r}: use one of {list(WEIGHTINGS)}")
        for key in ("vote_alpha", "tse_alpha"):
            value = getattr(self, key)
            check(isinstance(value, (int, float)) and math.isfinite(value) and value >= 0,
                  f"temporal.{key}={value!r} must be a finite number >= 0 (the final step must weigh most)")
        check(isinstance(self.tse_skip_ratio, (int, float)) and 0.0 <= self.tse_skip_ratio <= 1.0,
              f"temporal.tse_skip_ratio={self.tse_skip_ratio!r} must be in [0, 1]")
        check(isinstance(self.tse_base, (int, float)) and math.isfinite(self.tse_base) and self.tse_base > 0
              and self.tse_base != 1, f"temporal.tse_base={self.tse_base!r}: use 2.718281828459045 (nats) or 2 (bits)")
        check(isinstance(self.timeline_samples, int) and self.timeline_samples > 0,
              f"temporal.timeline_samples={self.timeline_samples!r} must be a positive integer")

    def without_votes(self) -> TemporalSettings:
        """The same settings with no TCV weighting (RL rewards need only TSE and confidence)."""
        return dataclasses.replace(self, vote_weightings=())
