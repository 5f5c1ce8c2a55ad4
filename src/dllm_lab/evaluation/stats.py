"""Intervals for study tables: a paired bootstrap over problems, an unpaired one for two independent groups,
and a two-stage bootstrap over seeds and problems for training runs. A difference whose 95% interval covers
zero is reported as not resolved."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Interval:
    """``estimate`` with its 95% interval ``[low, high]``; ``resolved`` when the interval excludes zero."""

    estimate: float
    low: float
    high: float

    @property
    def resolved(self) -> bool:
        return self.low > 0 or self.high < 0

    def cell(self, digits: int = 3) -> str:
        """``+0.045 [+0.010, +0.080]``, with ``(not resolved)`` when the interval covers zero."""
        text = f"{self.estimate:+.{digits}f} [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return text if self.resolved else f"{text} (not resolved)"


def paired_bootstrap(values: Sequence[float], baseline: Sequence[float], resamples: int = 10_000, seed: int = 0,
                     level: float = 0.95) -> Interval:
    """Mean of ``values - baseline`` over the same problems (``values[i]`` and ``baseline[i]`` are one problem),
    with a percentile interval from resampling problems."""
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"paired_bootstrap needs two equal, non-empty 1-d arrays of per-problem scores; got {a.shape} "
                         f"and {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, diff.size, size=(resamples, diff.size))].mean(1)
    tail = (1 - level) / 2
    return Interval(float(diff.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)))


def group_bootstrap(values: Sequence[float], baseline: Sequence[float], resamples: int = 10_000, seed: int = 0,
                    level: float = 0.95) -> Interval:
    """``mean(values) - mean(baseline)`` for two independent groups (for example the TSE of wrong and of
    correct samples), with a percentile interval from resampling each group on its own."""
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if a.ndim != 1 or b.ndim != 1 or a.size == 0 or b.size == 0:
        raise ValueError(f"group_bootstrap needs two non-empty 1-d arrays; got {a.shape} and {b.shape}")
    rng = np.random.default_rng(seed)
    means = (a[rng.integers(0, a.size, size=(resamples, a.size))].mean(1)
             - b[rng.integers(0, b.size, size=(resamples, b.size))].mean(1))
    tail = (1 - level) / 2
    return Interval(float(a.mean() - b.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)))


def seed_problem_bootstrap(values: Sequence[Sequence[float]], baseline: Sequence[float], resamples: int = 10_000,
                           seed: int = 0, level: float = 0.95) -> Interval:
    """Mean over seeds and problems of ``values[s][i] - baseline[i]`` (``S`` training seeds, each scored on the
    same problems as the baseline), with an interval that resamples seeds and then problems: it carries both
    the seed spread and the finite problem set."""
    a, b = np.asarray(values, dtype=float), np.asarray(baseline, dtype=float)
    if a.ndim != 2 or a.shape[1] != b.shape[0] or a.size == 0:
        raise ValueError(f"seed_problem_bootstrap needs (seeds, problems) scores and (problems,) baseline scores; got "
                         f"{a.shape} and {b.shape}")
    diff = a - b[None, :]  # (S, N)
    rng = np.random.default_rng(seed)
    S, N = diff.shape
    seeds = rng.integers(0, S, size=(resamples, S))
    problems = rng.integers(0, N, size=(resamples, N))
    means = np.array([diff[s][:, p].mean() for s, p in zip(seeds, problems, strict=True)])
    tail = (1 - level) / 2
    return Interval(float(diff.mean()), float(np.quantile(means, tail)), float(np.quantile(means, 1 - tail)))


def mean_sd(values: Sequence[float]) -> str:
    """``mean ± sample sd`` over seeds (the value alone for one seed, ``-`` for none), 3 decimals."""
    if len(values) < 2:
        return f"{values[0]:.3f}" if values else "-"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"
